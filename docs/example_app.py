"""Your own Flask app feeding eventgate (docs/deploy.md, "Embedding"). Run it with
``EVENTGATE_*`` settings (or var/eventgate.env): ``gunicorn --chdir docs example_app:app``."""
from flask import Flask, abort, jsonify, request

from eventgate import EventGate

app = Flask(__name__)
gate = EventGate(app)  # or: gate = EventGate(); gate.init_app(app) in an app factory
orders: dict[str, str] = {}


@app.post("/orders/<order_id>/pay")
def pay(order_id: str):
    gate.publish(f"orders.{order_id}", {"status": "paid"}, "order.updated")  # after-commit
    if request.args.get("card") == "declined":
        abort(409)  # the request fails, so the queued event is never sent
    orders[order_id] = "paid"
    return jsonify(id=order_id, status="paid")


@app.get("/orders/<order_id>/stream-token")
def stream_token(order_id: str):  # authenticate your user first; this example trusts anyone
    token, expires_at = gate.token_for([f"orders.{order_id}"], subject="user-7", ttl=600)
    return jsonify(url=f"/streams?token={token}", expires_at=expires_at.isoformat())
