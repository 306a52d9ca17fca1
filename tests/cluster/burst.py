"""Burst: streams opened from raw sockets as fast as they connect, for a test that must meet a
short window in the server (client threads arrive too slowly)."""

from __future__ import annotations

import contextlib
import selectors
import socket


class Burst:
    """Streams opened as fast as the sockets connect, read without a thread each."""

    def __init__(self, port: int, paths: list[str]) -> None:
        self.selector = selectors.DefaultSelector()
        self.received = [b""] * len(paths)
        self.sockets = []
        for index, path in enumerate(paths):
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                         f"Accept: text/event-stream\r\n\r\n".encode())
            sock.setblocking(False)
            self.selector.register(sock, selectors.EVENT_READ, index)
            self.sockets.append(sock)

    def read(self) -> None:
        for key, _ in self.selector.select(0.05):
            with contextlib.suppress(BlockingIOError):
                self.received[key.data] += key.fileobj.recv(65536)

    def without(self, needle: bytes) -> list[int]:
        self.read()
        return [i for i, got in enumerate(self.received) if needle not in got]

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()
        self.selector.close()
