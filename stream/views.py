"""GET /streams through Flask, and the stream pool's other routes.

Plain stream requests never get here: the accept fast path (stream/acceptor.py) serves them
before gunicorn parses anything. This view serves the rest — HEAD, unusual headers, requests
the fast path declines — with the same code (stream/opening.py): it writes the response on a
duplicate of gunicorn's socket and tells stream/handover.py that the connection is taken.
"""

from __future__ import annotations

import os
import socket

from flask import Blueprint, Response, current_app, jsonify, request

from eventgate.shared.errors import EventgateError
from eventgate.stream.opening import OsSocket, StreamRequest, cors_headers, open_connection
from eventgate.stream.state import StreamState

bp = Blueprint("stream", __name__)

#: Set in the WSGI environ when the view took the socket over (see stream.handover).
HANDLED = "eventgate.handled"


class UnsupportedServer(EventgateError):
    code = "unsupported_server"
    status = 500


def _state() -> StreamState:
    return current_app.extensions["eventgate.stream"]


@bp.get("/streams", provide_automatic_options=False)
def streams():
    state = _state()
    gunicorn_socket = request.environ.get("gunicorn.socket")
    ask = StreamRequest(
        token=request.args.get("token") or request.cookies.get("eventgate_token"),
        channels=request.args.getlist("channel"),
        last_event_id=request.headers.get("Last-Event-ID") or request.args.get("lastEventId"),
        origin=request.headers.get("Origin"),
    )

    def take_socket() -> OsSocket:
        if gunicorn_socket is None:
            raise UnsupportedServer("streams are served only under gunicorn -k gevent.")
        # Our own descriptor for the connection: gunicorn closes its socket when the view returns.
        raw = OsSocket(fileno=os.dup(gunicorn_socket.fileno()))
        raw.setblocking(False)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return raw

    open_connection(state, ask, take_socket)
    request.environ[HANDLED] = True
    return ""


def _cors(state: StreamState) -> dict[str, str]:
    return cors_headers(state, request.headers.get("Origin"))


@bp.after_app_request
def _cors_on_refusals(response: Response) -> Response:
    # Refusals (401, 403, 429...) carry CORS headers too: a cross-origin client can then read
    # why it was refused instead of seeing a bare network error.
    for name, value in _cors(_state()).items():
        response.headers.setdefault(name, value)
    return response


#: What a preflight may ask for: EventSource sends no custom header of its own, but polyfills
#: and fetch-based clients send Last-Event-ID and Cache-Control.
_PREFLIGHT_HEADERS = "Last-Event-ID, Cache-Control, Accept"


@bp.route("/streams", methods=["OPTIONS"])
def streams_options():
    """A CORS preflight from a configured origin gets the CORS answer; any other OPTIONS gets
    ``Allow``. EventSource itself never preflights (a simple GET), fetch-based clients may."""
    state = _state()
    if request.headers.get("Access-Control-Request-Method") is None:
        return Response(status=204, headers={"Allow": "GET, HEAD, OPTIONS"})
    if not _cors(state):
        return jsonify(
            error="origin_forbidden",
            message="this origin may not open streams here (see EVENTGATE_CORS_ORIGINS).",
        ), 403
    return Response(status=204, headers={
        "Access-Control-Allow-Methods": "GET",
        "Access-Control-Allow-Headers": _PREFLIGHT_HEADERS,
        "Access-Control-Max-Age": "600",
    })


@bp.get("/streams/healthz")
def healthz():
    state = _state()
    return jsonify(
        status="ok",
        pid=os.getpid(),
        streams=len(state.hub.subscribers),
        channels=len(state.hub.channels),
        redis_connected=state.broker.connected,
    )


@bp.get("/streams/readyz")
def readyz():
    state = _state()
    try:
        ok = state.broker.connected and state.redis.ping()
    except Exception:  # noqa: BLE001 - any failure means not ready
        ok = False
    if not ok:
        return jsonify(error="not_ready", message="Redis is not reachable from this worker."), 503
    return jsonify(status="ready")
