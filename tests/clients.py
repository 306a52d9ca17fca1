"""Test clients: raw HTTP/1.1 over a socket and streams read by the strict WHATWG parser
(tests/wsse.py), from any loopback source address (127.0.0.2 is another client to nginx's
per-address limits).

``request``/``send`` build and read one answer, for requests no polite client sends (bare CR,
NUL, odd bytes). ``StreamClient`` is one stream request read in a background thread;
``EventSourceClient`` behaves like a browser's EventSource: on a clean end or a dropped
connection it waits the server's ``retry:`` and reconnects with ``Last-Event-ID``, and it stops
for good on a non-200 answer. (tests/e2e/test_gateway.py also reads streams with sseclient-py,
the declared client, on purpose.)
"""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import quote

from tests.servers import LOOPBACK, wait_for
from tests.wsse import ParsedEvent, Parser


def stream_path(token: str, channels: tuple[str, ...] = (), last_event_id: str | None = None,
                query_cursor: bool = False) -> str:
    path = f"/streams?token={quote(token)}"
    for name in channels:
        path += f"&channel={quote(name)}"
    if last_event_id and query_cursor:
        path += f"&lastEventId={quote(last_event_id)}"
    return path


def connect(port: int, source: str = LOOPBACK, timeout: float = 10.0) -> socket.socket:
    """A TCP connection to ``port`` on loopback from ``source`` (any 127.x address)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    sock.bind((source, 0))
    sock.connect((LOOPBACK, port))
    return sock


def parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    """(status, headers with lower-case names) of a response head without its blank line."""
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers: dict[str, str] = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers


@dataclass
class Answer:
    """A response: ``status`` 0 when the server closed without answering."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    def json(self) -> dict:
        return json.loads(self.body.decode())

    @property
    def is_json(self) -> bool:
        return self.headers.get("content-type", "").startswith("application/json")

    @property
    def is_stream(self) -> bool:
        return self.headers.get("content-type", "").startswith("text/event-stream")


def build(method: str, target: str | bytes, port: int,
          headers: Mapping[str, str | bytes] | None = None, body: bytes = b"") -> bytes:
    """The bytes of one request, exactly as given (no validation, no escaping)."""
    target_bytes = target if isinstance(target, bytes) else target.encode("utf-8")
    lines = [method.encode() + b" " + target_bytes + b" HTTP/1.1",
             f"Host: {LOOPBACK}:{port}".encode()]
    for name, value in (headers or {}).items():
        value_bytes = value if isinstance(value, bytes) else value.encode("utf-8")
        lines.append(name.encode() + b": " + value_bytes)
    if body or method in ("POST", "PUT"):
        lines.append(f"Content-Length: {len(body)}".encode())
    lines.append(b"Connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def send(port: int, data: bytes, source: str = LOOPBACK, timeout: float = 10.0) -> Answer:
    """Send ``data`` and read one response. A stream (``text/event-stream``) is read only up to
    its head and first bytes, then closed."""
    with connect(port, source, timeout) as sock:
        sock.sendall(data)
        return read_answer(sock, timeout)


def request(port: int, method: str, target: str | bytes,
            headers: Mapping[str, str | bytes] | None = None, body: bytes = b"",
            source: str = LOOPBACK, timeout: float = 10.0) -> Answer:
    return send(port, build(method, target, port, headers, body), source, timeout)


def read_answer(sock: socket.socket, timeout: float = 10.0, whole_stream: bool = False) -> Answer:
    """One response from ``sock``. A stream is read only up to its head and the bytes that came
    with it, unless ``whole_stream`` (then to its end, like any body: a stream nginx answers by
    itself is short)."""
    deadline = time.monotonic() + timeout
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = _recv(sock, deadline)
        if not chunk:
            return Answer(0, body=data)
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    answer = Answer(*parse_head(head))
    headers = answer.headers
    if answer.is_stream and not whole_stream:
        answer.body = rest
        return answer
    if "content-length" in headers:
        length = int(headers["content-length"])
        while len(rest) < length:
            chunk = _recv(sock, deadline)
            if not chunk:
                break
            rest += chunk
        answer.body = rest[:length]
    elif headers.get("transfer-encoding") == "chunked":
        dechunker = Dechunker()
        body = dechunker.feed(rest)
        while not dechunker.done:
            chunk = _recv(sock, deadline)
            if not chunk:
                break
            body += dechunker.feed(chunk)
        answer.body = body
    else:
        while chunk := _recv(sock, deadline):
            rest += chunk
        answer.body = rest
    return answer


def _recv(sock: socket.socket, deadline: float) -> bytes:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError("no complete answer before the deadline")
    sock.settimeout(remaining)
    try:
        return sock.recv(65536)
    except (ConnectionResetError, ssl.SSLError):
        return b""  # a reset (or a TLS connection cut) ends the answer


class StreamClient:
    """One GET on a stream from ``source``; events collect in ``events`` as they arrive, and in
    ``arrivals`` with the wall-clock time each arrived. With ``drain`` the body is read and
    dropped (a flood's own streams: parsing them would starve this process's other threads)."""

    def __init__(self, port: int, path: str, headers: dict[str, str] | None = None, *,
                 source: str = LOOPBACK, drain: bool = False, tls: bool = False) -> None:
        self.port = port
        self.tls = tls
        self.path = path
        self.headers = headers or {}
        self.source = source
        self.drain = drain
        self.status: int | None = None
        self.response_headers: dict[str, str] = {}
        self.head_raw = b""
        self.body = b""
        self.raw = b""
        self.events: list[ParsedEvent] = []
        self.arrivals: list[tuple[float, ParsedEvent]] = []
        self.parser = Parser()
        self.ended = threading.Event()
        self.headed = threading.Event()
        self.sock: socket.socket | None = None
        self._thread: threading.Thread | None = None

    def start(self, timeout: float = 10.0) -> StreamClient:
        """Send the request; return once the head arrived (and a refusal's whole body)."""
        self.sock = connect(self.port, self.source, timeout)
        if self.tls:  # the production edge (a test certificate: not verified)
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            self.sock = context.wrap_socket(self.sock)
        lines = [f"GET {self.path} HTTP/1.1", f"Host: {LOOPBACK}:{self.port}",
                 "Accept: text/event-stream"]
        lines += [f"{k}: {v}" for k, v in self.headers.items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        self.sock.settimeout(None)
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        if not self.headed.wait(timeout):
            raise AssertionError(f"no response head within {timeout}s for {self.path[:60]}")
        if not self.is_stream:
            self.ended.wait(timeout)
        return self

    def _read(self) -> None:
        buffer = b""
        dechunk = None
        received = 0
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    break
                if self.drain and self.is_stream:  # a refusal's body is still read
                    continue
                self.raw += chunk
                if self.status is None:
                    buffer += chunk
                    if b"\r\n\r\n" not in buffer:
                        continue
                    head, _, chunk = buffer.partition(b"\r\n\r\n")
                    self._parse_head(head)
                    if self.response_headers.get("transfer-encoding") == "chunked":
                        dechunk = Dechunker()
                if dechunk is not None:
                    chunk = dechunk.feed(chunk)
                length = self.response_headers.get("content-length")
                received += len(chunk)
                if self.is_stream:
                    events = self.parser.feed(chunk)
                    if events:
                        now = time.time()
                        self.arrivals.extend((now, event) for event in events)
                        self.events.extend(events)
                else:
                    self.body += chunk
                if (dechunk is not None and dechunk.done) or (length and received >= int(length)):
                    break  # the response ended; a proxy may keep the connection open
        except (OSError, ValueError):  # ValueError: a TLS socket closed under the read
            pass
        finally:
            if self.status is None:
                self.status = 0
                self.headed.set()
            self.ended.set()

    def _parse_head(self, head: bytes) -> None:
        self.head_raw = head
        self.status, self.response_headers = parse_head(head)
        self.headed.set()

    @property
    def is_stream(self) -> bool:
        return self.status == 200 and self.response_headers.get(
            "content-type", "").startswith("text/event-stream")

    def json(self) -> dict:
        self.ended.wait(5)
        return json.loads(self.body.decode())

    def wait_open(self, timeout: float = 10.0) -> StreamClient:
        """Wait for the stream's opening (its ``retry:``, sent once the stream's position in each
        channel is fixed): whatever is published after it, the stream delivers."""
        wait_for(lambda: self.parser.retry is not None or self.ended.is_set(), timeout,
                 f"the opening of {self.path[:60]}")
        assert self.parser.retry is not None, f"the stream ended first: {self.raw[-300:]!r}"
        return self

    def wait_events(self, count: int, timeout: float = 10.0) -> list[ParsedEvent]:
        """Wait until ``count`` events arrived; all the events so far."""
        try:
            wait_for(lambda: len(self.events) >= count, timeout, f"{count} events")
        except AssertionError:
            raise AssertionError(f"got {len(self.events)} of {count} events in {timeout}s; "
                                 f"last: {self.events[-3:]}") from None
        return self.events

    def close(self, reset: bool = False) -> None:
        if self.sock is None:
            return
        try:
            if reset:
                linger = b"\x01\x00\x00\x00\x00\x00\x00\x00"  # on, 0 s: close sends RST
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
                # Wake the reader's recv (SHUT_RD sends nothing): while a thread is inside
                # recv, close() releases nothing, so no RST left until the next bytes came.
                self.sock.shutdown(socket.SHUT_RD)
            else:
                self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # already closed by the other side or by another thread
        if reset:
            self.ended.wait(5)  # the reader is out of recv: close() now sends the RST
        self.sock.close()
        self.ended.wait(5)


class Dechunker:
    """Incremental decoder of an HTTP/1.1 chunked body (what nginx sends to clients)."""

    def __init__(self) -> None:
        self.buffer = b""
        self.left = 0  # data bytes of the current chunk still to read
        self.skip = 0  # bytes of the CRLF after a chunk still to drop
        self.done = False

    def feed(self, data: bytes) -> bytes:
        self.buffer += data
        out = []
        while not self.done:
            if self.left:
                take = self.buffer[: self.left]
                self.buffer = self.buffer[len(take):]
                self.left -= len(take)
                out.append(take)
                if self.left:
                    break
                self.skip = 2
            if self.skip:
                dropped = min(self.skip, len(self.buffer))
                self.buffer = self.buffer[dropped:]
                self.skip -= dropped
                if self.skip:
                    break
            line, sep, rest = self.buffer.partition(b"\r\n")
            if not sep:
                break
            self.buffer = rest
            self.left = int(line.split(b";")[0], 16)
            self.done = self.left == 0
        return b"".join(out)


class EventSourceClient:
    """Reconnects like a browser: after the stream ends it waits ``retry`` ms and reconnects
    with Last-Event-ID; a non-200 answer ends it for good (``failed_status``)."""

    def __init__(self, port: int, token: str, channels: tuple[str, ...] = (),
                 last_event_id: str | None = None, tls: bool = False) -> None:
        self.port = port
        self.tls = tls
        self.token = token
        self.channels = channels
        self.last_event_id = last_event_id
        self.events: list[ParsedEvent] = []
        #: When each of ``events`` arrived (wall clock), index for index.
        self.arrivals: list[float] = []
        self.connections = 0
        #: When each connection attempt began (monotonic): when the client chose to retry.
        self.attempt_times: list[float] = []
        #: When each connection's response head arrived (monotonic): when the server answered,
        #: which a server that is starting delays for every waiting client alike.
        self.connect_times: list[float] = []
        self.failed_status: int | None = None
        #: The last bytes of each connection that ended, in order: how the server ended it
        #: (a ``retry:``, a comment such as "redis unavailable, retry", or the last event).
        self.endings: list[bytes] = []
        self.retry_ms = 3000
        self._stop = threading.Event()
        self.current: StreamClient | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> EventSourceClient:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            headers = {"Last-Event-ID": self.last_event_id} if self.last_event_id else {}
            client = StreamClient(self.port, stream_path(self.token, self.channels), headers,
                                  tls=self.tls)
            self.attempt_times.append(time.monotonic())
            try:
                client.start()
            except (OSError, AssertionError):
                self._stop.wait(self.retry_ms / 1000)
                continue
            self.current = client
            self.connections += 1
            self.connect_times.append(time.monotonic())
            if client.status != 200:
                self.failed_status = client.status
                return
            seen = 0
            while not self._stop.is_set() and not client.ended.wait(0.005):  # 5 ms: the poll
                seen = self._take(client, seen)
            self._take(client, seen)
            if client.parser.retry is not None:
                self.retry_ms = client.parser.retry
            client.close()
            self.endings.append(client.raw[-100:])
            self._stop.wait(self.retry_ms / 1000)

    def _take(self, client: StreamClient, seen: int) -> int:
        new = client.events[seen:]
        # The reader thread appends an arrival before its event: there is one for each.
        self.arrivals.extend(at for at, _ in client.arrivals[seen:seen + len(new)])
        self.events.extend(new)
        # Like a browser: the parser's last event ID, which frames with no data (the opening
        # cursor) set too, not only the ids of dispatched events.
        if client.parser.last_event_id:
            self.last_event_id = client.parser.last_event_id
        return seen + len(new)

    @property
    def opened(self) -> bool:
        """Whether the current connection's stream has opened (see StreamClient.wait_open)."""
        current = self.current
        return current is not None and current.parser.retry is not None

    def data(self, event_type: str = "message") -> list:
        return [json.loads(e.data) for e in list(self.events) if e.type == event_type]

    def wait_data(self, expected: list, timeout: float = 20.0, event_type: str = "message"):
        """The data of every ``event_type`` event once there are as many as ``expected`` (or
        the deadline passed: the caller compares)."""
        with contextlib.suppress(AssertionError):
            wait_for(lambda: len(self.data(event_type)) >= len(expected), timeout,
                     f"{len(expected)} {event_type} events")
        return self.data(event_type)

    def story(self, since: float = 0.0) -> str:
        """What this client went through, for a failure message: its connections, when each
        attempt began and was answered (seconds after the monotonic time ``since``), how each
        ended, its cursor and what it received."""
        def times(values: list[float]) -> list[float]:
            return [round(t - since, 2) for t in values]

        return (f"connections={self.connections} failed_status={self.failed_status} "
                f"attempts={times(self.attempt_times)} answered={times(self.connect_times)} "
                f"last_event_id={self.last_event_id!r} events={len(self.events)} "
                f"endings={self.endings}")

    def stop(self) -> None:
        self._stop.set()
        if self.current is not None:
            self.current.close()
        self._thread.join(5)
