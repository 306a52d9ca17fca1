"""The accept fast path: plain ``GET /streams`` requests served straight off the accepted socket.

Opening a stream is the stream tier's most frequent request, and most of its worker CPU through
gunicorn went to gunicorn's HTTP parser, its WSGI environ and Flask's dispatch
(docs/performance.md). A stream request needs none of them: one request line, a few
headers, then the socket is ours. So the worker's connection handler first *peeks* at the
request without consuming it. A complete, unremarkable ``GET /streams`` is parsed here and opened
through stream/opening.py; anything else — another path or method, an incomplete or oversized
head, a body, a header the fast path does not vouch for — is left untouched in the socket and
handed to gunicorn's own handler, which parses it and runs the Flask app as before. Both paths
run the same checks (stream/opening.py), so a request's outcome does not depend on the door.

A full worker (``max_streams_per_worker`` streams) stops watching its listeners (``pause``):
the workers share them, so a new connection goes to a worker with room instead of being
refused here while another could hold it. Only what still waits after ``full_accept_seconds``
— every worker full, then — is taken: a stream request is refused (503, which nginx turns into
a retry for an EventSource), a health check is answered, and nothing waits for a stream to end.
A stream closing resumes the watch at once.

The parser is deliberately narrow: ASCII, no control characters, token-only header names (no
``_``: gunicorn drops those), no duplicates of the headers that matter, no obs-fold. Being
narrow costs nothing but the fast path for odd requests, and it keeps request smuggling and
header-confusion questions where they were, with gunicorn.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
from collections.abc import Callable
from urllib.parse import parse_qsl

import gevent
import gevent.pool
from gevent.socket import socket as GeventSocket  # noqa: N812 - the class, named apart from ours
from gevent.socket import wait_read
from werkzeug.http import parse_cookie

from eventgate.shared import logformat
from eventgate.shared.errors import EventgateError, RedisUnreachable, StreamFailed
from eventgate.stream.opening import (
    RETRY_LOCATION_HEADER,
    OsSocket,
    StreamOpener,
    StreamRequest,
    no_delay,
)

log = logging.getLogger("eventgate.stream")

_NAME = re.compile(r"[A-Za-z0-9-]+")
#: Headers whose duplicates would make the request ambiguous: left to gunicorn and Flask.
_SINGLE = frozenset({"last-event-id", "origin", "cookie", "x-request-id", "host",
                     RETRY_LOCATION_HEADER.lower()})
#: Headers that mean something the fast path does not do (a body, an upgrade, a continue).
_DECLINE = frozenset({"content-length", "transfer-encoding", "expect", "upgrade", "http2-settings"})

Handler = Callable[[object, object, object], None]

#: How long a full worker leaves waiting connections to workers with room before it takes them
#: itself (to refuse a stream, or answer a health check): long enough for a worker with room
#: to have taken them, short enough that nothing seems to hang when every worker is full.
FULL_ACCEPT_SECONDS = 0.1
#: The most connections a full worker takes per ``FULL_ACCEPT_SECONDS`` and listener.
WAITING_ACCEPT = 100


class Acceptor:
    """Accepts the connections of a gunicorn gevent worker's listeners itself (see install).

    Per connection: one raw greenlet, no gevent socket object. The greenlet peeks at the
    request; a plain stream request is opened here and the greenlet ends (the connection is
    the hub's); anything else becomes a gevent socket handed to gunicorn's handler, in a pool
    of ``worker_connections`` greenlets, exactly as gunicorn's own server would have run it."""

    def __init__(
        self,
        opener: StreamOpener,
        fallback: Handler,
        listeners: list,
        *,
        max_line: int = 8190,
        max_fields: int = 100,
        max_field: int = 8190,
        max_accept: int = 100,
        fallback_connections: int = 1000,
        first_byte_timeout: float = 30.0,
        full_accept_seconds: float = FULL_ACCEPT_SECONDS,
    ) -> None:
        self.opener = opener
        self.fallback = fallback
        self.max_line = max_line
        self.max_fields = max_fields
        self.max_field = max_field
        # What one peek may read: the longest head gunicorn would accept is longer, but any head
        # that does not fit here simply takes the ordinary path.
        self.peek_bytes = max_line + 4096
        self.max_accept = max_accept
        self.first_byte_timeout = first_byte_timeout
        self.accepting = False
        #: Whether this worker is full and leaves new connections to the others (``pause``).
        self.paused = False
        self._fallbacks = gevent.pool.Pool(fallback_connections)
        self._listeners = []
        loop = gevent.get_hub().loop
        self._waited = loop.timer(full_accept_seconds, full_accept_seconds)
        for listener in listeners:
            # Our own handle on the listening socket (the OS's class: no gevent watchers).
            # TCP_NODELAY set here is inherited by every accepted socket (Linux).
            sock = OsSocket(fileno=os.dup(listener.fileno()))
            sock.setblocking(False)
            no_delay(sock)
            watcher = loop.io(sock.fileno(), 1)
            self._listeners.append((listener, sock, watcher))

    def start(self) -> Acceptor:
        self.accepting = True
        if not self.paused:
            self._watch()
        return self

    def pause(self) -> None:
        """This worker is full: leave new connections to the workers with room; take only what
        still waits every ``full_accept_seconds``. Never blocks (a libev callback may call it)."""
        if self.paused:
            return
        self.paused = True
        for _, _, watcher in self._listeners:
            watcher.stop()
        if self.accepting:
            self._waited.start(self._take_waiting)

    def resume(self) -> None:
        """This worker has room again: accept as before. Never blocks."""
        if not self.paused:
            return
        self.paused = False
        self._waited.stop()
        if self.accepting:
            self._watch()

    def close(self, graceful_timeout: float = 0.0) -> None:
        """Stop accepting; give requests already on the ordinary path ``graceful_timeout``
        seconds to finish (streams are not waited for: the worker ends them itself)."""
        self.accepting = False
        self._waited.stop()
        for _, sock, watcher in self._listeners:
            watcher.stop()
            sock.close()
        self._listeners = []
        self._fallbacks.join(timeout=graceful_timeout)

    def _watch(self) -> None:
        for listener, sock, watcher in self._listeners:
            watcher.start(self._on_acceptable, listener, sock)

    def _take_waiting(self) -> None:
        # In gevent's hub, while full: what waited this long, no worker with room took.
        for listener, sock, _ in self._listeners:
            self._on_acceptable(listener, sock, WAITING_ACCEPT)

    def _on_acceptable(self, listener: object, sock: socket.socket, most: int = 0) -> None:
        # In gevent's hub (a libev callback): accept what is waiting, never block.
        for _ in range(most or self.max_accept):
            try:
                fd, addr = sock._accept()
            except BlockingIOError:
                return
            except OSError as error:  # out of descriptors, mostly: the next wake-up retries
                log.warning("accept failed: %s", error)
                return
            gevent.spawn_raw(self._serve, listener, fd, addr)

    def _serve(self, listener: object, fd: int, addr: object) -> None:
        conn = OsSocket(fileno=fd)
        conn.setblocking(False)
        taken = False
        try:
            head = self._peek(conn)
            if not head:
                return  # gone, or silent for first_byte_timeout
            parsed = parse_stream_request(
                head, max_line=self.max_line, max_fields=self.max_fields,
                max_field=self.max_field,
            )
            if parsed is None:
                client = GeventSocket(fileno=conn.detach())
                self._fallbacks.spawn(self._ordinary, listener, client, addr)
                return
            ask, length, request_id = parsed
            conn.recv(length)  # consume the head the peek left in the socket
            logformat.bind_request_id(request_id)

            def take_socket() -> OsSocket:
                nonlocal taken
                taken = True
                return conn

            try:
                self.opener.open(ask, take_socket)
            except RedisUnreachable:
                pass  # no answer at all: the proxy tries another node (see RedisUnreachable)
            except EventgateError as error:
                _answer(conn, self.opener.refusal_response(error, ask.origin,
                                                           ask.retry_location))
            except Exception:
                log.exception("unhandled error opening a stream")
                if not taken:
                    _answer(conn, self.opener.refusal_response(StreamFailed(), ask.origin))
        except OSError:
            pass  # the client left while we read its request or answered it
        except Exception:  # a bug here must not print a traceback per connection from the hub
            log.exception("unhandled error accepting a connection")
        finally:
            if not taken:
                conn.close()

    def _peek(self, conn: socket.socket) -> bytes:
        """The request's first bytes, left in the socket; waits (cooperatively) only for the
        first of them."""
        try:
            return conn.recv(self.peek_bytes, socket.MSG_PEEK)
        except BlockingIOError:
            pass
        try:
            wait_read(conn.fileno(), self.first_byte_timeout)
        except TimeoutError:  # gevent's socket.timeout
            return b""
        return conn.recv(self.peek_bytes, socket.MSG_PEEK)

    def _ordinary(self, listener: object, client: socket.socket, addr: object) -> None:
        try:
            self.fallback(listener, client, addr)
        finally:
            client.close()


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
        rewind=_first(args, "rewind"),
        retry_location=headers.get(RETRY_LOCATION_HEADER.lower()),
    )
    return ask, end + 4, headers.get("x-request-id")


def _first(args: list[tuple[str, str]], key: str) -> str | None:
    for name, value in args:
        if name == key:
            return value
    return None


def _answer(client: socket.socket, response: bytes) -> None:
    with contextlib.suppress(OSError):  # the client left; nothing to tell it
        client.sendall(response)


def install(opener: StreamOpener, worker: object) -> Acceptor | None:
    """Take over a gunicorn gevent worker's listeners (its post_worker_init hook, which runs
    before the worker builds its servers): the worker then builds none, and the returned,
    started acceptor serves stream requests itself and passes everything else to the worker's
    own handler. Returns None, changing nothing, where the fast path does not apply (TLS)."""
    cfg = worker.cfg
    if cfg.is_ssl or not worker.sockets:
        return None
    acceptor = Acceptor(
        opener,
        worker.handle,
        worker.sockets,
        max_line=cfg.limit_request_line or 8190,
        max_fields=cfg.limit_request_fields,
        max_field=cfg.limit_request_field_size or 8190,
        # Several workers share the listeners: take one connection per wake-up, as gunicorn's
        # own servers do then, so that connections spread over the workers.
        max_accept=1 if cfg.workers > 1 else 100,
        fallback_connections=cfg.worker_connections,
        first_byte_timeout=float(cfg.timeout or 30),
    )
    worker.sockets = []
    return acceptor.start()
