"""The Flask door: GET /streams and the stream pool's other routes, the middleware that lets a
view take gunicorn's socket over, and the JSON answer to every refusal.

Plain stream requests never get here: the accept fast path (stream/acceptor.py) serves them
before gunicorn parses anything. This view serves the rest — HEAD, unusual headers, requests
the fast path declines — with the same code (stream/opening.py): it writes the response on a
duplicate of gunicorn's socket and tells the middleware (``Handover``) that the connection is
taken.
"""

from __future__ import annotations

import logging
import os

from flask import Blueprint, Flask, Response, current_app, jsonify, request
from gunicorn.workers.base_async import ALREADY_HANDLED
from werkzeug.exceptions import HTTPException

from eventgate.shared.errors import (
    ChannelNotGranted,
    EventgateError,
    InvalidRequest,
    StreamFailed,
    UnsupportedServer,
)
from eventgate.shared.history import next_link, read_history
from eventgate.shared.names import validate_channel
from eventgate.shared.primary import not_ready
from eventgate.stream.opening import (
    RETRY_LOCATION_HEADER,
    OsSocket,
    StreamRequest,
    no_delay,
    refusal_headers,
)
from eventgate.stream.state import StreamState

log = logging.getLogger("eventgate.stream")

bp = Blueprint("stream", __name__)

#: Set in the WSGI environ when the view took the socket over (see Handover).
HANDLED = "eventgate.handled"


def install(app: Flask) -> None:
    """Serve the stream routes on ``app``, answer its errors with JSON, and wrap it in the
    Handover middleware."""
    app.register_blueprint(bp)
    app.register_error_handler(EventgateError, _eventgate_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected)
    app.wsgi_app = Handover(app.wsgi_app)


class Handover:
    """WSGI middleware for views that take the client socket over.

    When a view wrote its own response on the socket it sets ``environ[HANDLED]``; the
    middleware then returns gunicorn's ``ALREADY_HANDLED`` marker so gunicorn writes nothing
    more (no second header block, no 500 page). The marker is internal to gunicorn: the version
    is pinned in pyproject.toml and tests/stream covers the behaviour."""

    def __init__(self, app) -> None:  # noqa: ANN001 - any WSGI app
        self.app = app

    def __call__(self, environ, start_response):  # noqa: ANN001, ANN204 - WSGI
        started: list[tuple] = []

        def defer(status, headers, exc_info=None):  # noqa: ANN001, ANN202
            started.append((status, headers, exc_info))
            return lambda data: None

        body = self.app(environ, defer)
        if environ.get(HANDLED):
            if hasattr(body, "close"):
                body.close()
            return ALREADY_HANDLED
        start_response(*started[0])
        return body


def _state() -> StreamState:
    return StreamState.of(current_app)


@bp.get("/streams", provide_automatic_options=False)
def streams():
    state = _state()
    gunicorn_socket = request.environ.get("gunicorn.socket")
    ask = StreamRequest(
        token=request.args.get("token") or request.cookies.get("eventgate_token"),
        channels=request.args.getlist("channel"),
        last_event_id=request.headers.get("Last-Event-ID") or request.args.get("lastEventId"),
        origin=request.headers.get("Origin"),
        rewind=request.args.get("rewind"),
    )

    def take_socket() -> OsSocket:
        if gunicorn_socket is None:
            raise UnsupportedServer("streams are served only under gunicorn -k gevent.")
        # Our own descriptor for the connection: gunicorn closes its socket when the view returns.
        raw = OsSocket(fileno=os.dup(gunicorn_socket.fileno()))
        raw.setblocking(False)
        no_delay(raw)
        return raw

    state.opener.open(ask, take_socket)
    request.environ[HANDLED] = True
    return ""


def _cors(state: StreamState) -> dict[str, str]:
    return state.opener.cors_headers(request.headers.get("Origin"))


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


@bp.get("/streams/history")
def history():
    """A page of one channel's retained log for a browser holding a token that grants it
    (the token as ``/streams`` takes it: query, else cookie); the same page as the channels
    API's (shared/history.py), refused like a stream (401/403)."""
    state = _state()
    grant = state.opener.tokens.verify(
        request.args.get("token") or request.cookies.get("eventgate_token")
    )
    name = request.args.get("channel")
    if name is None:
        raise InvalidRequest("name the channel to read with &channel=NAME.")
    if not grant.covers(validate_channel(name)):
        raise ChannelNotGranted(f"the token does not grant channel {name!r}.", name)
    page = read_history(state.redis, name, request.args.get("after"), request.args.get("limit"))
    response = jsonify(page)
    response.headers["Cache-Control"] = "no-store"
    response.headers.update(next_link(request.path, request.args.to_dict(flat=False), page))
    return response


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
    """200 while this worker's pub/sub connection is up and a writable primary answers (under
    Sentinel: the one the sentinels name, answering ROLE as a primary), else 503."""
    state = _state()
    try:
        reason = None if state.broker.connected else "its pub/sub connection is down."
        reason = reason or not_ready(state.redis)
    except Exception:  # noqa: BLE001 - any failure means not ready
        reason = "Redis did not answer."
    if reason is not None:
        return jsonify(
            error="not_ready", message=f"Redis is not reachable from this worker: {reason}"
        ), 503
    return jsonify(status="ready")


# -- JSON errors for every refusal: {"error": code, "message": sentence} ---------------------


def _eventgate_error(error: EventgateError) -> Response:
    response = jsonify(error=error.code, message=error.message)
    response.status_code = error.status
    retry_location = None
    if request.endpoint == "stream.streams":
        retry_location = request.headers.get(RETRY_LOCATION_HEADER)
    extra = refusal_headers(error, retry_location)
    if "X-Accel-Redirect" in extra:
        del response.headers["Content-Type"]  # see refusal_headers
    response.headers.update(extra)
    return response


def _http_error(error: HTTPException) -> Response:
    name = (error.name or "error").lower().replace(" ", "_")
    response = jsonify(error=name, message=error.description or error.name)
    response.status_code = error.code or 500
    return response


def _unexpected(error: Exception) -> tuple[Response, int]:
    log.exception("unhandled error")
    failed = StreamFailed()
    return jsonify(error=failed.code, message=failed.message), failed.status
