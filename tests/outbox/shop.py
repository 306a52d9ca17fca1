"""A small Flask-SQLAlchemy shop for the outbox's fault tests, and how they read what reached Redis.

Every order bumps its channel's row in ``counters`` (``UPDATE … RETURNING``) and publishes the
new count as ``seq``: the row lock makes the transactions of one channel take turns, so ``seq``
*is* the database's commit order of that channel, whatever threads or processes commit. A log
that holds ``seq`` 1..n in order, each once, is an outbox that kept order and never duplicated.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass

import sqlalchemy as sa
from flask import Flask, jsonify
from flask_sqlalchemy import SQLAlchemy

from eventgate.shared.config import Config
from eventgate.shared.events import Event, read_page
from eventgate.shared.outbox import Outbox
from eventgate.web.extension import EventGate

COUNTERS = sa.Table(
    "counters", sa.MetaData(),
    sa.Column("channel", sa.String(128), primary_key=True),
    sa.Column("n", sa.Integer, nullable=False),
)


def create_counters(engine: sa.Engine, channels: Iterable[str]) -> None:
    """The ``counters`` table with one row per channel at 0."""
    COUNTERS.create(engine, checkfirst=True)
    with engine.begin() as connection:
        connection.execute(sa.insert(COUNTERS), [{"channel": c, "n": 0} for c in channels])


def next_seqs(connection: sa.Connection, channel: str, count: int = 1) -> range:
    """Bump ``channel``'s counter by ``count`` in ``connection``'s transaction: the seqs of its
    next ``count`` events in commit order (1, 2, …)."""
    last = connection.execute(
        sa.update(COUNTERS).where(COUNTERS.c.channel == channel)
        .values(n=COUNTERS.c.n + count).returning(COUNTERS.c.n)
    ).scalar_one()
    return range(last - count + 1, last + 1)


def commit_events(engine: sa.Engine, outbox: Outbox, channel: str, count: int = 1) -> None:
    """One job-worker transaction publishing the channel's next ``count`` events."""
    with engine.begin() as connection:
        for seq in next_seqs(connection, channel, count):
            outbox.publish(connection, channel, {"seq": seq}, "counted")


def log_events(client, channel: str) -> list[Event]:
    """Everything ``channel``'s Redis log holds, oldest first."""
    events: list[Event] = []
    after = "0-0"
    while True:
        entries = read_page(client, channel, after)
        if not entries:
            return events
        events += [Event.from_entry(channel, entry_id, fields) for entry_id, fields in entries]
        after = events[-1].id


def log_seqs(client, channel: str) -> list[int]:
    """The ``seq`` of every event in ``channel``'s log, in log order."""
    return [json.loads(event.data)["seq"] for event in log_events(client, channel)]


def outbox_rows(engine: sa.Engine, outbox: Outbox, channel: str) -> int:
    """How many outbox rows ``channel`` has, waiting or relayed."""
    table = outbox.table
    with engine.connect() as connection:
        return connection.execute(
            sa.select(sa.func.count()).where(table.c.channel == channel)
        ).scalar_one()


@dataclass
class Shop:
    """The app, its database, and its EventGate (None: the same app without eventgate)."""

    app: Flask
    db: SQLAlchemy
    gate: EventGate | None

    @property
    def engine(self) -> sa.Engine:
        with self.app.app_context():
            return self.db.engine

    def close(self) -> None:
        if self.gate is not None:
            self.gate.outbox.stop()
            self.gate.publisher.client.close()
        with self.app.app_context():
            self.db.engine.dispose()


def make_shop(database_url: str, config: Config, *, gated: bool = True) -> Shop:
    """The shop over ``database_url`` (tables created; with ``gated`` an EventGate with the
    transactional outbox, publishing to ``config``'s Redis)."""
    app = Flask(f"shop{'' if gated else '-plain'}")
    app.config["SQLALCHEMY_DATABASE_URI"] = database_url
    db = SQLAlchemy(app)

    class Order(db.Model):  # type: ignore[name-defined]
        __tablename__ = "orders"
        id = db.Column(db.Integer, primary_key=True)
        channel = db.Column(db.String(128), nullable=False)
        note = db.Column(db.String(64), nullable=False, default="")

    gate = EventGate(app, config, db=db) if gated else None

    def publish(channel: str, data: dict, event_type: str = "order.created") -> None:
        if gate is not None:
            gate.publish(channel, data, event_type)

    def order(channel: str, note: str = "") -> Order:
        new = Order(channel=channel, note=note)
        db.session.add(new)
        db.session.flush()
        return new

    @app.post("/orders/<channel>")
    def create(channel: str):
        new = order(channel)
        publish(channel, {"order": new.id})
        db.session.commit()
        return jsonify(id=new.id, channel=channel), 201

    @app.post("/rollback/<channel>")
    def rolled_back(channel: str):
        new = order(channel)
        publish(channel, {"order": new.id})
        db.session.rollback()
        return jsonify(rolled_back=True)

    @app.post("/uncommitted/<channel>")
    def uncommitted(channel: str):
        new = order(channel)
        publish(channel, {"order": new.id})
        return jsonify(committed=False)  # the app context ends: Flask-SQLAlchemy rolls back

    @app.post("/raise/<channel>")
    def raising(channel: str):
        new = order(channel)
        publish(channel, {"order": new.id})
        raise RuntimeError("the view failed after publishing")

    @app.post("/nested/<channel>/<inner>")
    def nested(channel: str, inner: str):
        kept = order(channel)
        publish(channel, {"order": kept.id})
        savepoint = db.session.begin_nested()
        dropped = order(inner)
        publish(inner, {"order": dropped.id})
        savepoint.rollback()
        db.session.commit()
        return jsonify(id=kept.id)

    @app.post("/released/<channel>")
    def released(channel: str):
        savepoint = db.session.begin_nested()
        new = order(channel)
        publish(channel, {"order": new.id})
        savepoint.commit()
        # The view goes on working in its transaction (a slow query, a call out): time for a
        # relay woken too early to look, find nothing committed, and go idle.
        time.sleep(0.2)
        db.session.commit()
        return jsonify(id=new.id)

    @app.post("/interleaved/<channel>")
    def interleaved(channel: str):
        # Outside, in a released savepoint, in a savepoint rolled back inside it, outside again:
        # the committed events arrive in the order of the publish calls, the dropped one never.
        steps = []
        for step in ("outer", "released", "dropped", "last"):
            new = order(channel, step)
            if step == "released":
                outer_savepoint = db.session.begin_nested()
                publish(channel, {"order": new.id, "step": step})
            elif step == "dropped":
                inner_savepoint = db.session.begin_nested()
                publish(channel, {"order": new.id, "step": step})
                inner_savepoint.rollback()
                outer_savepoint.commit()
            else:
                publish(channel, {"order": new.id, "step": step})
            steps.append(step)
        db.session.commit()
        return jsonify(steps=steps)

    @app.post("/twice/<channel>")
    def twice(channel: str):
        ids = []
        for step in ("first", "second"):
            new = order(channel, step)
            publish(channel, {"order": new.id, "step": step})
            db.session.commit()
            ids.append(new.id)
        return jsonify(ids=ids)

    with app.app_context():
        db.create_all()
        if gate is not None:
            gate.outbox.create_tables()
    return Shop(app, db, gate)
