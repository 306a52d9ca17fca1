"""GET /streams: verify, take over the socket, resume, and leave the connection to the hub.

Everything that can refuse a request (token, channels, cursor, limits) is checked before the
first byte, so refusals are real HTTP statuses with JSON bodies. Then the view writes the response
head itself on a duplicate of gunicorn's socket, hands the connection to the hub and returns at
once: no greenlet stays behind per connection (see design.md, "Write").
"""

from __future__ import annotations

import os
import random
import socket

from flask import Blueprint, Response, current_app, jsonify, request
from gevent import monkey

from shared import cursor, sse
from shared.errors import EventgateError
from stream.resume import Unavailable, open_stream, start_positions
from stream.state import StreamState
from stream.subscriber import Subscriber

bp = Blueprint("stream", __name__)

#: The OS's socket class, not gevent's cooperative one: the hub only ever sends without waiting,
#: and a plain socket costs no libev watchers (less CPU per accept, less memory per stream).
_OsSocket = monkey.get_original("socket", "socket")

#: Set in the WSGI environ when the view took the socket over (see stream.handover).
HANDLED = "eventgate.handled"

_HEAD = (
    b"HTTP/1.1 200 OK\r\n"
    b"Content-Type: text/event-stream; charset=utf-8\r\n"
    b"Cache-Control: no-cache\r\n"
    b"X-Accel-Buffering: no\r\n"
    b"Connection: close\r\n"
)


def _state() -> StreamState:
    return current_app.extensions["eventgate.stream"]


class StreamLimit(EventgateError):
    code = "too_many_channels"
    status = 400


@bp.get("/streams", provide_automatic_options=False)
def streams():
    state = _state()
    config = state.config
    token = request.args.get("token") or request.cookies.get("eventgate_token")
    grant = state.tokens.verify(token)
    channels = grant.resolve(request.args.getlist("channel"))
    if len(channels) > config.max_channels_per_stream:
        raise StreamLimit(
            f"a stream carries at most {config.max_channels_per_stream} channels."
        )
    requested = cursor.parse(
        request.headers.get("Last-Event-ID") or request.args.get("lastEventId"), channels
    )
    gunicorn_socket = request.environ.get("gunicorn.socket")
    if gunicorn_socket is None:
        return jsonify(
            error="unsupported_server",
            message="streams are served only under gunicorn -k gevent.",
        ), 500
    lease = state.limits.admit(grant.subject)  # 503 worker full / 429 subject full

    def closed(subscriber: Subscriber) -> None:
        state.hub.remove(subscriber)
        state.limits.release(lease)

    try:
        # Our own descriptor for the connection: gunicorn closes its socket when the view returns.
        raw = _OsSocket(fileno=os.dup(gunicorn_socket.fileno()))
        raw.setblocking(False)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        subscriber = Subscriber(
            raw,
            channels,
            loop=state.loop,
            on_close=closed,
            max_queue_bytes=config.max_queue_bytes,
            max_queue_frames=config.max_queue_frames,
            subject=grant.subject,
            expires_at=grant.expires_at,
        )
    except BaseException:
        state.limits.release(lease)  # no connection will ever close it (e.g. out of descriptors)
        raise
    try:
        positions = start_positions(state.redis, channels, requested, state.hub, state.broker)
    except Unavailable:
        positions = None
    subscriber.send(_HEAD + _cors_header(state) + b"\r\n" + sse.retry(jittered(config.retry_ms)))
    try:
        if positions is None:
            raise Unavailable("Redis is unreachable")
        open_stream(
            subscriber,
            positions,
            hub=state.hub,
            broker=state.broker,
            client=state.redis,
            timeout=max(2.0, config.heartbeat_seconds),
        )
    except Unavailable:
        subscriber.finish(sse.comment("redis unavailable, retry"))
    except BaseException:
        subscriber.close("error")  # gives its descriptor and its lease back
        raise
    request.environ[HANDLED] = True
    return ""


def jittered(retry_ms: int) -> int:
    """A reconnection delay spread over [retry_ms/2, retry_ms*3/2] so that clients cut at the
    same moment (a worker restart) do not all come back in the same instant."""
    return int(retry_ms * random.uniform(0.5, 1.5))


def _cors_header(state: StreamState) -> bytes:
    return "".join(f"{name}: {value}\r\n" for name, value in _cors(state).items()).encode(
        "latin-1"
    )


def _cors(state: StreamState) -> dict[str, str]:
    """CORS headers for a request from a configured origin (``EVENTGATE_CORS_ORIGINS``), else
    none. Credentials are allowed (the cookie token, ``withCredentials``), so the origin is
    echoed — only after an exact match against the configured list, never a pattern."""
    origin = request.headers.get("Origin")
    if not origin or origin not in state.cors_origins:
        return {}
    return {
        "Access-Control-Allow-Origin": origin,
        "Access-Control-Allow-Credentials": "true",
        "Vary": "Origin",
    }


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
