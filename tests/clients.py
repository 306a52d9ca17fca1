"""Test clients for streams: raw sockets parsed by the strict WHATWG parser (tests/wsse.py).

``StreamClient`` is one HTTP request read in a background thread; ``EventSourceClient`` behaves
like a browser's EventSource: on a clean end or a dropped connection it waits the server's
``retry:`` and reconnects with ``Last-Event-ID``, and it stops for good on a non-200 answer.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from urllib.parse import quote

from tests.servers import LOOPBACK
from tests.wsse import ParsedEvent, Parser


def stream_path(token: str, channels: tuple[str, ...] = (), last_event_id: str | None = None,
                query_cursor: bool = False) -> str:
    path = f"/streams?token={quote(token)}"
    for name in channels:
        path += f"&channel={quote(name)}"
    if last_event_id and query_cursor:
        path += f"&lastEventId={quote(last_event_id)}"
    return path


class StreamClient:
    """One GET on a stream; events collect in ``events`` as they arrive."""

    def __init__(self, port: int, path: str, headers: dict[str, str] | None = None) -> None:
        self.port = port
        self.path = path
        self.headers = headers or {}
        self.status: int | None = None
        self.response_headers: dict[str, str] = {}
        self.head_raw = b""
        self.body = b""
        self.raw = b""
        self.events: list[ParsedEvent] = []
        self.parser = Parser()
        self.ended = threading.Event()
        self.headed = threading.Event()
        self.sock: socket.socket | None = None
        self._thread: threading.Thread | None = None

    def start(self, timeout: float = 10.0) -> StreamClient:
        self.sock = socket.create_connection((LOOPBACK, self.port), timeout=timeout)
        lines = [f"GET {self.path} HTTP/1.1", f"Host: {LOOPBACK}:{self.port}",
                 "Accept: text/event-stream"]
        lines += [f"{k}: {v}" for k, v in self.headers.items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        self.sock.settimeout(None)
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        if not self.headed.wait(timeout):
            raise AssertionError(f"no response head within {timeout}s for {self.path[:60]}")
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
                    self.events.extend(self.parser.feed(chunk))
                else:
                    self.body += chunk
                if (dechunk is not None and dechunk.done) or (length and received >= int(length)):
                    break  # the response ended; a proxy may keep the connection open
        except OSError:
            pass
        finally:
            if self.status is None:
                self.status = 0
                self.headed.set()
            self.ended.set()

    def _parse_head(self, head: bytes) -> None:
        self.head_raw = head
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        self.status = int(status_line.split()[1])
        for line in header_lines:
            name, _, value = line.partition(":")
            self.response_headers[name.strip().lower()] = value.strip()
        self.headed.set()

    @property
    def is_stream(self) -> bool:
        return self.status == 200 and self.response_headers.get(
            "content-type", "").startswith("text/event-stream")

    def json(self) -> dict:
        self.ended.wait(5)
        return json.loads(self.body.decode())

    def wait_events(self, count: int, timeout: float = 10.0) -> list[ParsedEvent]:
        deadline = time.monotonic() + timeout
        while len(self.events) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        if len(self.events) < count:
            raise AssertionError(
                f"got {len(self.events)} of {count} events in {timeout}s; last: {self.events[-3:]}")
        return self.events

    def close(self, reset: bool = False) -> None:
        if self.sock is None:
            return
        try:
            if reset:
                linger = b"\x01\x00\x00\x00\x00\x00\x00\x00"  # on, 0 s: close sends RST
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
            else:
                self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # already closed by the other side or by another thread
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
                 last_event_id: str | None = None) -> None:
        self.port = port
        self.token = token
        self.channels = channels
        self.last_event_id = last_event_id
        self.events: list[ParsedEvent] = []
        self.connections = 0
        self.connect_times: list[float] = []
        self.failed_status: int | None = None
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
            client = StreamClient(self.port, stream_path(self.token, self.channels), headers)
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
            while not client.ended.is_set() and not self._stop.is_set():
                seen = self._take(client, seen)
                time.sleep(0.005)
            self._take(client, seen)
            if client.parser.retry is not None:
                self.retry_ms = client.parser.retry
            client.close()
            self._stop.wait(self.retry_ms / 1000)

    def _take(self, client: StreamClient, seen: int) -> int:
        new = client.events[seen:]
        self.events.extend(new)
        # Like a browser: the parser's last event ID, which frames with no data (the opening
        # cursor) set too, not only the ids of dispatched events.
        if client.parser.last_event_id:
            self.last_event_id = client.parser.last_event_id
        return seen + len(new)

    def data(self, event_type: str = "message") -> list:
        return [json.loads(e.data) for e in list(self.events) if e.type == event_type]

    def wait_data(self, expected: list, timeout: float = 20.0, event_type: str = "message"):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.data(event_type)
            if len(got) >= len(expected):
                break
            time.sleep(0.02)
        return self.data(event_type)

    def stop(self) -> None:
        self._stop.set()
        if self.current is not None:
            self.current.close()
        self._thread.join(5)
