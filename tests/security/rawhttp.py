"""Raw HTTP/1.1 over a socket, for requests no polite client sends (bare CR, NUL, odd bytes) and
from any loopback source address (127.0.0.2 is another client to nginx's per-address limits)."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from tests.clients import Dechunker
from tests.servers import LOOPBACK


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


def connect(port: int, source: str = LOOPBACK, timeout: float = 10.0) -> socket.socket:
    """A TCP connection to ``port`` on loopback from ``source`` (any 127.x address)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    sock.bind((source, 0))
    sock.connect((LOOPBACK, port))
    return sock


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


def read_answer(sock: socket.socket, timeout: float = 10.0) -> Answer:
    deadline = time.monotonic() + timeout
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = _recv(sock, deadline)
        if not chunk:
            return Answer(0, body=data)
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers: dict[str, str] = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    answer = Answer(int(status_line.split()[1]), headers)
    if headers.get("content-type", "").startswith("text/event-stream"):
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
    except ConnectionResetError:
        return b""
