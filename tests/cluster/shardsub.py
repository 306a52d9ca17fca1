"""A raw shard-channel subscriber for the cluster tests: bytes on a socket, so that what Redis
sends (an unsolicited ``sunsubscribe``, a closed connection) is seen exactly, with no client
library in between."""

from __future__ import annotations

import socket

from tests.servers import RedisServer


def subscriber(node: RedisServer, channel: str) -> socket.socket:
    """A raw RESP2 connection SSUBSCRIBEd to ``channel`` on ``node`` (confirmation read)."""
    sock = socket.create_connection((node.host, node.port), timeout=5)
    sock.sendall(f"SSUBSCRIBE {channel}\r\n".encode())
    expected = resp2(["ssubscribe", channel, 1])
    assert read_exactly(sock, len(expected)) == expected
    return sock


def resp2(items: list[str | int]) -> bytes:
    """A RESP2 array of bulk strings and integers, as Redis sends pub/sub messages."""
    parts = [f"*{len(items)}\r\n".encode()]
    for item in items:
        if isinstance(item, int):
            parts.append(f":{item}\r\n".encode())
        else:
            parts.append(f"${len(item.encode())}\r\n{item}\r\n".encode())
    return b"".join(parts)


def read_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    return data


def closed(sock: socket.socket) -> bool:
    """The server closed ``sock`` (EOF or reset), nothing else arriving first."""
    sock.settimeout(5)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
