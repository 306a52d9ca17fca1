"""Health probes: ``/healthz`` (the process lives) and ``/readyz`` (it can publish right now).

Liveness never touches Redis, so a Redis outage does not make a supervisor restart healthy web
workers; readiness does, so a load balancer can stop sending publishes that would fail.
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from eventgate.shared.primary import not_ready
from eventgate.web.errors import error_response
from eventgate.web.extension import current_eventgate

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz() -> Response:
    """200 when Redis answers ROLE as a primary within the client's short timeout (under
    Sentinel: the primary the sentinels name; under Cluster: a node says every slot is served,
    shared/clusterstate.py), else 503."""
    reason = not_ready(current_eventgate().client)
    if reason is not None:
        return error_response("not_ready", reason, 503, {"Retry-After": "1"})
    return jsonify(status="ok")
