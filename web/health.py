"""Health probes: ``/healthz`` (the process lives) and ``/readyz`` (it can publish right now).

Liveness never touches Redis, so a Redis outage does not make a supervisor restart healthy web
workers; readiness does, so a load balancer can stop sending publishes that would fail.
"""

from __future__ import annotations

import redis
from flask import Blueprint, Response, jsonify

from eventgate.web.errors import error_response
from eventgate.web.extension import current_eventgate

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz() -> Response:
    """200 when Redis answers PING within the client's short timeout, else 503."""
    try:
        current_eventgate().client.ping()
    except redis.RedisError as error:
        return error_response(
            "not_ready", f"Redis is not answering ({type(error).__name__}).", 503,
            {"Retry-After": "1"},
        )
    return jsonify(status="ok")
