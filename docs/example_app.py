"""An orders app feeding eventgate through the transactional outbox (docs/outbox.md walks
through it). A page rendered from the database streams its updates, missing nothing published
between the render and the stream's open.

Settings: ``EVENTGATE_*`` as for the stack (``Config.from_env()``, or var/eventgate.env);
``EXAMPLE_DATABASE_URL`` (any SQLAlchemy URL; default ``orders.db`` in the app's instance
folder); ``EXAMPLE_STREAM_URL``, where pages open their streams (default ``/streams``: nginx
serves this app and the stream pool on one origin; an absolute URL of a stream pool elsewhere
needs this app's origin in that pool's ``EVENTGATE_CORS_ORIGINS``). Run it::

    pip install "eventgate[outbox]" gunicorn
    flask --app docs/example_app.py create-tables          # once: the orders and the outbox
    gunicorn --chdir docs example_app:app
    curl -X POST -H 'Content-Type: application/json' -d '{"item": "tea"}' localhost:8000/orders
    curl -X POST -H 'Content-Type: application/json' -d '{"status": "paid"}' \\
        localhost:8000/orders/1/status

and open http://localhost:8000/orders (through nginx, where ``/streams`` reaches the stream pool).
"""

from __future__ import annotations

import os
from datetime import UTC, datetime

from flask import Blueprint, Flask, jsonify, render_template_string, request, url_for
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import String, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.orm.exc import StaleDataError
from werkzeug.exceptions import BadRequest, Conflict, HTTPException, NotFound

from eventgate import EventGate
from eventgate.web.extension import current_eventgate

CHANNEL = "orders"
STATUSES = ("new", "paid", "packed", "shipped", "delivered", "cancelled")


class Base(DeclarativeBase):
    pass


db = SQLAlchemy(model_class=Base)


def now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)  # naive UTC: what every database gives back


class Order(db.Model):
    __tablename__ = "orders"
    id: Mapped[int] = mapped_column(primary_key=True)
    item: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(20), default="new")
    updated: Mapped[datetime] = mapped_column(default=now)
    # +1 on every UPDATE, by SQLAlchemy (an UPDATE that finds another version fails, so two
    # concurrent changes cannot both claim version 3). Pages apply an event only if it is newer
    # than what they show: events may repeat what the page rendered (see orders_page).
    version: Mapped[int] = mapped_column(default=1)
    __mapper_args__ = {"version_id_col": version}

    def as_event(self) -> dict:
        return {"id": self.id, "item": self.item, "status": self.status,
                "version": self.version,
                "updated": self.updated.isoformat(timespec="milliseconds") + "Z"}


# The page: the list as the database had it, then live updates. ``?delay_stream=1`` and
# ``?no_cursor=1`` are demo aids (tests/outbox/test_example_app.py uses them): the first waits
# for a click before opening the stream, so that you can change orders in between; the second
# opens it without the cursor, to see those changes missed.
PAGE = """<!doctype html>
<title>Orders</title>
<h1>Orders <small id="stream" data-state="waiting">waiting</small></h1>
{% if delay_stream %}<button id="go">Open the stream</button>{% endif %}
<ul id="orders">
{% for order in orders %}
  <li id="order-{{ order.id }}" data-version="{{ order.version }}">
    #{{ order.id }} {{ order.item }}: <b>{{ order.status }}</b></li>
{% endfor %}
</ul>
<script>
const stream = {{ stream | tojson }};
const received = window.received = [];   // every order event, as it came: {id, order, version}

function show(order) {
  let li = document.getElementById("order-" + order.id);
  if (li && Number(li.dataset.version) >= order.version) return;  // shown already
  if (!li) {
    li = document.createElement("li");
    li.id = "order-" + order.id;
    document.getElementById("orders").append(li);
  }
  li.dataset.version = order.version;
  li.replaceChildren("#" + order.id + " " + order.item + ": ", document.createElement("b"));
  li.lastChild.textContent = order.status;
}

function open(cursor) {
  const state = document.getElementById("stream");
  let url = stream.url + "?token=" + encodeURIComponent(stream.token);
  if (cursor) url += "&lastEventId=" + encodeURIComponent(cursor);  // start where the page is
  const source = new EventSource(url);
  state.textContent = state.dataset.state = "connecting";
  source.onopen = () => { state.textContent = state.dataset.state = "live"; };
  source.onerror = () => { state.textContent = state.dataset.state = "reconnecting"; };
  for (const type of ["order.created", "order.updated"]) {
    source.addEventListener(type, (e) => {
      const order = JSON.parse(e.data);
      received.push({id: e.lastEventId, order: order.id, version: order.version});
      show(order);
    });
  }
  source.addEventListener("eventgate.token_expired", async (e) => {
    source.close();   // a fresh token, and on from this event's id: nothing skipped or repeated
    stream.token = (await (await fetch(stream.token_url)).json()).token;
    open(e.lastEventId);
  });
}

const start = () => open(stream.no_cursor ? null : stream.cursor);
if (document.getElementById("go")) document.getElementById("go").onclick = start;
else start();
</script>
"""

views = Blueprint("orders", __name__)


@views.get("/orders")
def orders_page():
    gate = current_eventgate()
    # The cursor FIRST, then the data. Taken after the read, a change committed between the two
    # would be in neither the page (read before it) nor the stream (starting after its event);
    # taken before, such a change is both shown and streamed, and the page skips the repeat.
    cursor = gate.cursor([CHANNEL])
    orders = db.session.scalars(select(Order).order_by(Order.id)).all()
    token, _ = gate.token_for([CHANNEL], subject="user-7")  # authenticate your user first
    stream = {"url": os.environ.get("EXAMPLE_STREAM_URL", "/streams"), "token": token,
              "cursor": cursor, "token_url": url_for(".stream_token"),
              "no_cursor": request.args.get("no_cursor") == "1"}
    return render_template_string(
        PAGE, orders=orders, stream=stream, delay_stream=request.args.get("delay_stream") == "1")


@views.get("/orders/stream-token")
def stream_token():  # a page's stream outlives its token: it fetches a new one here
    token, expires_at = current_eventgate().token_for([CHANNEL], subject="user-7")
    return jsonify(token=token, expires_at=expires_at.isoformat())


@views.post("/orders")
def create_order():
    order = Order(item=field("item", longest=200))
    db.session.add(order)
    db.session.flush()  # assigns the id the event carries
    current_eventgate().publish(CHANNEL, order.as_event(), "order.created")
    db.session.commit()  # the order and its event, both or neither
    return jsonify(order.as_event()), 201


@views.post("/orders/<int:order_id>/status")
def change_status(order_id: int):
    status = field("status")
    if status not in STATUSES:
        raise BadRequest(f"status must be one of {', '.join(STATUSES)}.")
    order = db.session.get(Order, order_id)
    if order is None:
        raise NotFound(f"there is no order {order_id}.")
    order.status, order.updated = status, now()
    db.session.flush()  # the UPDATE: bumps the version the event carries
    current_eventgate().publish(CHANNEL, order.as_event(), "order.updated")
    db.session.commit()
    return jsonify(order.as_event())


def field(name: str, longest: int = 20) -> str:
    body = request.get_json(silent=True)
    value = body.get(name) if isinstance(body, dict) else None
    if not isinstance(value, str) or not 0 < len(value.strip()) <= longest:
        raise BadRequest(f'send JSON with "{name}": a string of 1 to {longest} characters.')
    return value.strip()


def json_error(error: HTTPException):
    return jsonify(error=error.name.lower().replace(" ", "_"), message=error.description), (
        error.code or 500)


def changed_meanwhile(error: StaleDataError):
    return json_error(Conflict("the order changed meanwhile: read it again and retry."))


def create_app() -> Flask:
    app = Flask(__name__)
    # A relative SQLite path lives in the instance folder (Flask-SQLAlchemy's rule).
    app.config["SQLALCHEMY_DATABASE_URI"] = os.environ.get(
        "EXAMPLE_DATABASE_URL", "sqlite:///orders.db")
    db.init_app(app)
    gate = EventGate(app, db=db)  # the outbox: gate.publish joins db.session's transaction
    app.register_blueprint(views)
    app.register_error_handler(HTTPException, json_error)
    app.register_error_handler(StaleDataError, changed_meanwhile)

    @app.cli.command("create-tables")
    def create_tables() -> None:
        """Create the orders table and eventgate's outbox table (if missing)."""
        db.create_all()
        gate.outbox.create_tables()

    return app


app = create_app()  # for gunicorn and `flask --app`
