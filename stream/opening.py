"""Opening a stream: every check, the response head, and the hand-over to the hub.

Two front doors share this code: the accept fast path (stream/acceptor.py), which serves plain
``GET /streams`` requests straight off the accepted socket, and the Flask view (stream/views.py),
which serves everything the fast path declines. Both must behave the same, so what a stream
request means — which token, which channels, which cursor, which refusal — is decided only here.

Everything that can refuse (token, channels, cursor, limits) is checked before the first byte,
so a refusal is a real HTTP status with a JSON body. Then the head goes out on our own socket,
the connection is registered with the hub and resumed, and no greenlet stays behind for it
(see design.md, "Write").
"""

from __future__ import annotations

import json
import random
import re
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from http import HTTPStatus

import gevent
from gevent import monkey

from eventgate.shared import cursor, sse
from eventgate.shared.config import Config
from eventgate.shared.errors import (
    EventgateError,
    RedisUnreachable,
    TokenExpired,
    TooBusy,
    TooManyChannels,
)
from eventgate.shared.history import parse_rewind
from eventgate.shared.tokens import ChannelTokens
from eventgate.stream.limits import StreamLimits
from eventgate.stream.resume import Resume, Unavailable
from eventgate.stream.subscriber import Subscriber

#: The OS's socket class, not gevent's cooperative one: the hub only ever sends without waiting,
#: and a plain socket costs no libev watchers (less CPU per accept, less memory per stream).
OsSocket = monkey.get_original("socket", "socket")


def no_delay(sock: socket.socket) -> None:
    """TCP_NODELAY on a TCP socket: every event leaves at once. A Unix socket (nginx in front,
    on the same host) has no Nagle to turn off."""
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

#: The request header of a stream request through nginx (deploy/nginx, deploy/production):
#: the named location where nginx itself answers a stream that should come back later, with a
#: 200 holding only ``retry:``. A browser's EventSource never retries after a non-200 answer.
RETRY_LOCATION_HEADER = "X-Eventgate-Retry-Location"
_LOCATION = re.compile(r"@[A-Za-z0-9_]{1,64}")

_HEAD = (
    b"HTTP/1.1 200 OK\r\n"
    b"Content-Type: text/event-stream; charset=utf-8\r\n"
    b"Cache-Control: no-cache\r\n"
    b"X-Accel-Buffering: no\r\n"
    b"Connection: close\r\n"
)


@dataclass(frozen=True)
class StreamRequest:
    """What a stream request asks for, however it arrived: the token (query, else cookie), the
    requested channel names, the resume cursor (header, else ``lastEventId``), the Origin,
    ``rewind`` as the query gave it (how many retained events a stream without a cursor starts
    with), and where the proxy answers a stream to retry (``retry_location``)."""

    token: str | None
    channels: Sequence[str]
    last_event_id: str | None
    origin: str | None
    rewind: str | None = None
    #: Its RETRY_LOCATION_HEADER: set by nginx, which answers there what we refuse for now
    #: (the fast path's refusals; the Flask door's error handler reads the header itself).
    retry_location: str | None = None


class StreamOpener:
    """What both front doors call to open a stream, built once per worker (stream/state.py)."""

    def __init__(
        self, config: Config, tokens: ChannelTokens, limits: StreamLimits, resume: Resume
    ) -> None:
        self.config = config
        self.tokens = tokens
        self.limits = limits
        self.resume = resume
        self.hub = resume.hub
        self.loop = gevent.get_hub().loop
        self.cors_origins = frozenset(config.cors_origins)

    def open(self, ask: StreamRequest, take_socket: Callable[[], socket.socket]) -> None:
        """Check ``ask`` and, if it passes, make the connection the hub's. Raises
        EventgateError (a refusal to answer) before anything is written or ``take_socket`` is
        called; after that, nothing propagates but programming errors, and the connection
        answers for itself.

        ``take_socket`` returns a non-blocking OS socket (TCP_NODELAY set) for the connection
        that the caller's server will not close."""
        config = self.config
        if self.resume.broker.unreachable():
            raise RedisUnreachable(
                "this stream node cannot reach Redis right now; another node can serve the "
                "stream.", max(1, config.retry_ms // 1000),
            )
        grant = self.tokens.verify(ask.token)
        channels = grant.resolve(ask.channels)
        if len(channels) > config.max_channels_per_stream:
            raise TooManyChannels(
                f"a stream carries at most {config.max_channels_per_stream} channels."
            )
        requested = cursor.parse(ask.last_event_id, channels)
        rewind = 0 if ask.rewind is None else parse_rewind(ask.rewind)
        limits, hub = self.limits, self.hub
        # The log heads it starts at ride along in the admission's round trip (if it makes one).
        start = self.resume.start(channels, requested, rewind)
        # 503 worker full / 401 subject revoked / 429 subject full
        lease = limits.admit(grant.subject, grant.issued_at, channels, start.rider())

        def closed(subscriber: Subscriber) -> None:
            hub.remove(subscriber)
            limits.release(lease)

        try:
            raw = take_socket()
            subscriber = Subscriber(
                raw,
                channels,
                loop=self.loop,
                on_close=closed,
                max_queue_bytes=config.max_queue_bytes,
                max_queue_frames=config.max_queue_frames,
                subject=grant.subject,
                expires_at=grant.expires_at,
            )
        except BaseException:
            limits.release(lease)  # no connection will ever close it (e.g. out of descriptors)
            raise
        try:
            positions = start.positions()
        except Unavailable:
            positions = None
        opening = (
            _HEAD + _header_lines(self.cors_headers(ask.origin)) + b"\r\n"
            + sse.retry(jittered(config.retry_ms))
        )
        if positions is not None:
            # The client's cursor from the first byte: were the stream to end before its first
            # event (a worker killed, Redis gone before the subscription was confirmed), the
            # reconnect resumes here; without it, it would start at the log's end again and
            # miss whatever was published in between.
            opening += sse.position(cursor.format(positions, channels[0]))
        subscriber.send(opening)
        subject = grant.subject
        if (
            subject is not None and positions is not None
            and self.resume.broker.revoked(subject, grant.issued_at)
        ):
            # Revoked after admission read Redis and before the hub knew of this stream (the
            # hub takes it in resume.open, with no greenlet switch since this check).
            subscriber.positions.update(positions)
            subscriber.finish(sse.revoked(subscriber.cursor(channels[0]), subject))
            return
        try:
            if positions is None:
                raise Unavailable("Redis is unreachable")
            self.resume.open(subscriber, positions, timeout=max(2.0, config.heartbeat_seconds))
        except Unavailable:
            subscriber.finish(sse.comment("redis unavailable, retry"))
        except BaseException:
            subscriber.close("error")  # gives its descriptor and its lease back
            raise

    def cors_headers(self, origin: str | None) -> dict[str, str]:
        """CORS headers for a request from a configured origin (``EVENTGATE_CORS_ORIGINS``),
        else none. Credentials are allowed (the cookie token, ``withCredentials``), so the
        origin is echoed — only after an exact match against the configured list, never a
        pattern."""
        if not origin or origin not in self.cors_origins:
            return {}
        return {
            "Access-Control-Allow-Origin": origin,
            "Access-Control-Allow-Credentials": "true",
            "Vary": "Origin",
        }

    def refusal_response(
        self, error: EventgateError, origin: str | None, retry_location: str | None = None
    ) -> bytes:
        """A whole HTTP response refusing a stream, for the fast path (the Flask app renders
        the same status, headers and body through stream/views.py)."""
        body = json.dumps(
            {"error": error.code, "message": error.message}, separators=(",", ":")
        ).encode() + b"\n"
        extra = refusal_headers(error, retry_location)
        headers = {
            **({} if "X-Accel-Redirect" in extra else {"Content-Type": "application/json"}),
            "Content-Length": str(len(body)),
            **extra,
            **self.cors_headers(origin),
            "Connection": "close",
        }
        status = f"HTTP/1.1 {error.status} {HTTPStatus(error.status).phrase}\r\n"
        return status.encode("latin-1") + _header_lines(headers) + b"\r\n" + body


def jittered(retry_ms: int) -> int:
    """A reconnection delay spread over [retry_ms/2, retry_ms*3/2] so that clients cut at the
    same moment (a worker restart) do not all come back in the same instant."""
    return int(retry_ms * random.uniform(0.5, 1.5))


def refusal_headers(error: EventgateError, retry_location: str | None = None) -> dict[str, str]:
    """The headers a refusal carries besides its JSON body: how to authenticate after a 401,
    when to come back after a 429/503.

    A stream refused *for now* (503: every worker full, Redis out of reach) whose proxy named a
    ``retry_location`` (RETRY_LOCATION_HEADER) names it back in ``X-Accel-Redirect``: nginx
    tries its other servers first (``proxy_next_upstream http_503``), then answers from there,
    so that a browser comes back. Such an answer goes without Content-Type (the caller leaves
    it out): nginx would keep ours on its own answer, and an EventSource takes nothing but
    ``text/event-stream``. Nobody sees its body. A client asking the pool directly gets the
    JSON 503; every other refusal (401, 403, 400, 429) passes through nginx as it is."""
    headers = {}
    if error.status == 401:
        code = "token_expired" if isinstance(error, TokenExpired) else "invalid_token"
        headers["WWW-Authenticate"] = f'Bearer error="{code}"'
    if isinstance(error, TooBusy):
        headers["Retry-After"] = str(error.retry_after)
    if error.status == 503 and retry_location and _LOCATION.fullmatch(retry_location):
        headers["X-Accel-Redirect"] = retry_location
    return headers


def _header_lines(headers: dict[str, str]) -> bytes:
    return "".join(f"{name}: {value}\r\n" for name, value in headers.items()).encode("latin-1")
