"""In-process stream pieces for the unit tests of the hub, subscriber, broker and resume: the far
end of a subscriber's socketpair read as SSE, waits that let gevent's loop run, and a guard
that fails a hand-off that would read the log back forever.

These tests run gevent's hub inside the pytest process *without monkey-patching*. The modules
under test need only gevent's own loop (libev watchers, greenlets, ``gevent.sleep``, gevent's
events); none of them relies on a patched ``socket``: subscribers write to OS sockets that never
block, and the broker waits for pub/sub replies on a libev watcher. redis-py's commands on an
unpatched socket block the whole loop for their local round trip, which changes no result.
Patching pytest's own process would make every other test's sockets, threads and sleeps
cooperative; a subprocess per test would hide the objects the tests need to look at.

The loop runs only while the test's own greenlet waits (``green_wait``, ``Peer.read``): what
the test does between two waits happens with no greenlet switch, which makes the order of events
deterministic (e.g. everything published before a wait reaches the broker in one wake-up).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

import gevent
from gevent.socket import wait_read

from tests.wsse import ParsedEvent, Parser


def green_wait(check: Callable[[], object], timeout: float, what: str):
    """Let gevent's loop run until ``check()`` is truthy; fail naming ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        gevent.sleep(0.005)


class CountingSocket:
    """A real socket that counts its ``send`` calls (a batch must be one send)."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self.sends = 0

    def send(self, data: bytes) -> int:
        self.sends += 1
        return self._sock.send(data)

    def __getattr__(self, name: str):
        return getattr(self._sock, name)


class Peer:
    """The client's end of a subscriber's socketpair: what the subscriber wrote, as raw bytes and
    as events parsed by the strict WHATWG parser (tests/wsse.py)."""

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self.sock = sock
        self.raw = bytearray()
        self.parser = Parser()
        self.events: list[ParsedEvent] = []
        self.eof = False

    def read(self, timeout: float = 5.0) -> bytes:
        """Wait (letting the loop run) until bytes or EOF arrive; return the bytes (b"" at EOF)."""
        wait_read(self.sock.fileno(), timeout=timeout, timeout_exc=AssertionError(
            f"nothing arrived within {timeout}s; so far: {bytes(self.raw)!r}"
        ))
        return self._take()

    def drain(self) -> bytes:
        """What has arrived by now, without waiting."""
        data = b""
        while not self.eof:
            chunk = self._take()
            if not chunk:
                break
            data += chunk
        return data

    def until(self, count: int, timeout: float = 5.0) -> list[ParsedEvent]:
        """Read until at least ``count`` events arrived in all; return them all."""
        deadline = time.monotonic() + timeout
        while len(self.events) < count:
            if self.eof:
                raise AssertionError(f"EOF after {len(self.events)} of {count} events")
            self.read(max(0.0, deadline - time.monotonic()))
        return self.events

    def until_size(self, size: int, timeout: float = 5.0) -> bytes:
        """Read until at least ``size`` bytes arrived in all; return them all."""
        deadline = time.monotonic() + timeout
        while len(self.raw) < size and not self.eof:
            self.read(max(0.0, deadline - time.monotonic()))
        return bytes(self.raw)

    def until_eof(self, timeout: float = 5.0) -> bytes:
        """Read until the subscriber closed its end; return everything it wrote."""
        deadline = time.monotonic() + timeout
        while not self.eof:
            self.read(max(0.0, deadline - time.monotonic()))
        return bytes(self.raw)

    def _take(self) -> bytes:
        try:
            chunk = self.sock.recv(1 << 20)
        except BlockingIOError:
            return b""
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            self.eof = True
            return b""
        self.raw += chunk
        self.events.extend(self.parser.feed(chunk))
        return chunk


def limit_replays(resume, monkeypatch, most: int) -> None:
    """Fail, rather than hang, when a hand-off reads the log back more than ``most`` times:
    a hand-off that never stops replaying never yields to gevent's loop either."""
    real = resume.replay
    calls = []

    def replay(subscriber, name):
        calls.append(name)
        assert len(calls) <= most, f"the hand-off read {name} back {len(calls)} times"
        real(subscriber, name)

    monkeypatch.setattr(resume, "replay", replay)
