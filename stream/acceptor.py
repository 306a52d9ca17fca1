"""The accept fast path: plain ``GET /streams`` requests served straight off the accepted socket.

Opening a stream is the stream tier's most frequent request, and through gunicorn's HTTP parser,
its WSGI environ and Flask's dispatch it cost ≈0.5 ms of worker CPU, about 60 % of it in those
layers (docs/performance.md). A stream request needs none of them: one request line, a few
headers, then the socket is ours. So the worker's connection handler first *peeks* at the
request without consuming it. A complete, unremarkable ``GET /streams`` is parsed here and opened
through stream/opening.py; anything else — another path or method, an incomplete or oversized
head, a body, a header the fast path does not vouch for — is left untouched in the socket and
handed to gunicorn's own handler, which parses it and runs the Flask app as before. Both paths
run the same checks (stream/opening.py), so a request's outcome does not depend on the door.

The parser is deliberately narrow: ASCII, no control characters, token-only header names (no
``_``: gunicorn drops those), no duplicates of the headers that matter, no obs-fold. Being
narrow costs nothing but the fast path for odd requests, and it keeps request smuggling and
header-confusion questions where they were, with gunicorn.
"""

from __future__ import annotations

import contextlib
import logging
import re
import socket
from collections.abc import Callable
from urllib.parse import parse_qsl

from werkzeug.http import parse_cookie

from shared import logformat
from shared.errors import EventgateError
from stream.opening import OsSocket, StreamRequest, open_connection, refusal_response
from stream.state import StreamState

log = logging.getLogger("eventgate.stream")

_NAME = re.compile(r"[A-Za-z0-9-]+")
#: Headers whose duplicates would make the request ambiguous: left to gunicorn and Flask.
_SINGLE = frozenset({"last-event-id", "origin", "cookie", "x-request-id", "host"})
#: Headers that mean something the fast path does not do (a body, an upgrade, a continue).
_DECLINE = frozenset({"content-length", "transfer-encoding", "expect", "upgrade", "http2-settings"})

Handler = Callable[[object, object, object], None]


class Acceptor:
    """Replaces a gunicorn gevent worker's connection handler (``worker.handle``); ``fallback``
    is the handler it replaced."""

    def __init__(
        self,
        state: StreamState,
        fallback: Handler,
        *,
        max_line: int = 8190,
        max_fields: int = 100,
        max_field: int = 8190,
    ) -> None:
        self.state = state
        self.fallback = fallback
        self.max_line = max_line
        self.max_fields = max_fields
        self.max_field = max_field
        # What one peek may read: the longest head gunicorn would accept is longer, but any head
        # that does not fit here simply takes the ordinary path.
        self.peek_bytes = max_line + 4096

    def handle(self, listener: object, client: socket.socket, addr: object) -> None:
        """Called by gevent's StreamServer in a fresh greenlet per accepted connection; the
        server closes ``client`` when this returns (a detached socket survives that)."""
        try:
            head = client.recv(self.peek_bytes, socket.MSG_PEEK)
        except OSError:
            return  # gone before it asked for anything
        parsed = parse_stream_request(
            head, max_line=self.max_line, max_fields=self.max_fields, max_field=self.max_field
        )
        if parsed is None:
            self.fallback(listener, client, addr)
            return
        ask, length, request_id = parsed
        try:
            client.recv(length)  # consume the head the peek left in the socket
        except OSError:
            return
        logformat.bind_request_id(request_id)

        def take_socket() -> OsSocket:
            raw = OsSocket(fileno=client.detach())
            raw.setblocking(False)
            return raw

        try:
            open_connection(self.state, ask, take_socket)
        except EventgateError as error:
            _answer(client, refusal_response(self.state, error, ask.origin))
        except Exception:
            log.exception("unhandled error opening a stream")
            _answer(client, _FAILED)


def parse_stream_request(
    head: bytes, *, max_line: int, max_fields: int, max_field: int
) -> tuple[StreamRequest, int, str | None] | None:
    """``(request, head length, X-Request-ID)`` when ``head`` starts with a complete plain
    ``GET /streams`` request the fast path may serve; None for anything else."""
    end = head.find(b"\r\n\r\n")
    if end < 0:
        return None
    try:
        text = head[:end].decode("ascii")
    except UnicodeDecodeError:
        return None
    lines = text.split("\r\n")
    request_line = lines[0]
    if len(request_line) > max_line or not request_line.isprintable():
        return None
    parts = request_line.split(" ")
    if len(parts) != 3 or parts[0] != "GET" or parts[2] not in ("HTTP/1.1", "HTTP/1.0"):
        return None
    path, _, query = parts[1].partition("?")
    if path != "/streams" or "#" in query:
        return None
    if len(lines) - 1 > max_fields:
        return None
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon or len(line) > max_field or not line.isprintable():
            return None
        if not _NAME.fullmatch(name):
            return None
        name = name.lower()
        if name in headers and name in _SINGLE:
            return None
        headers.setdefault(name, value.strip(" "))
    if not _DECLINE.isdisjoint(headers):
        return None
    args = parse_qsl(query, keep_blank_values=True)
    token = _first(args, "token")
    if not token and "cookie" in headers:
        token = parse_cookie(headers["cookie"]).get("eventgate_token")
    ask = StreamRequest(
        token=token,
        channels=[value for name, value in args if name == "channel"],
        last_event_id=headers.get("last-event-id") or _first(args, "lastEventId"),
        origin=headers.get("origin"),
    )
    return ask, end + 4, headers.get("x-request-id")


def _first(args: list[tuple[str, str]], key: str) -> str | None:
    for name, value in args:
        if name == key:
            return value
    return None


_FAILED_BODY = b'{"error":"internal_error","message":"The stream server failed; retry."}\n'
_FAILED = (
    b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\n"
    b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(_FAILED_BODY), _FAILED_BODY)
)


def _answer(client: socket.socket, response: bytes) -> None:
    with contextlib.suppress(OSError):  # the client left; nothing to tell it
        client.sendall(response)


def install(worker: object) -> None:
    """Put the fast path in front of a gunicorn gevent worker's handler (its post_worker_init
    hook; gevent's servers are built after it, from ``worker.handle``)."""
    app = getattr(worker, "wsgi", None)
    state = getattr(app, "extensions", {}).get("eventgate.stream")
    if state is None:
        return
    cfg = worker.cfg
    worker.handle = Acceptor(
        state,
        worker.handle,
        max_line=cfg.limit_request_line or 8190,
        max_fields=cfg.limit_request_fields,
        max_field=cfg.limit_request_field_size or 8190,
    ).handle
