"""Subscriber: one client connection — non-blocking sends, a bounded backlog, a writer only when
the kernel pushes back.

The hub calls ``deliver`` for every event; the common case is one ``send()`` on the raw socket
with no greenlet switch. Only bytes the kernel does not take at once are queued; a libev write
watcher (no greenlet) flushes them in one write per wake-up. A backlog past its bounds means the
client does not keep up: it is closed (it will resume from the log), so it never delays the hub
or any other client. A libev read watcher notices a client that hangs up at once.

Every method here may run inside a libev callback, in gevent's hub: nothing may block or switch.
"""

from __future__ import annotations

import contextlib
import socket
from collections import deque
from collections.abc import Callable, Sequence

from eventgate.shared import cursor, sse

_READ, _WRITE = 1, 2


class Subscriber:
    """One open stream. ``channels`` are its channels in request order; ``positions`` the id of the
    last event it was sent on each (``None`` until its resume point is known)."""

    __slots__ = (
        "sock", "fd", "channels", "multi", "positions", "live", "pending", "subject",
        "expires_at", "backlog", "backlog_bytes", "quiet", "closed", "close_reason", "written",
        "_corked",
        "_loop", "_reader", "_writer", "_on_close", "_max_bytes", "_max_frames",
    )

    def __init__(
        self,
        sock: socket.socket,
        channels: Sequence[str],
        *,
        loop,  # noqa: ANN001 - gevent's libev loop
        on_close: Callable[[Subscriber], None],
        max_queue_bytes: int,
        max_queue_frames: int,
        subject: str | None = None,
        expires_at: float = float("inf"),
    ) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.channels = tuple(channels)
        self.multi = len(self.channels) > 1
        self.positions: dict[str, str | None] = dict.fromkeys(self.channels)
        self.live = False
        self.pending: list[tuple[str, str, str, bytes]] = []
        self.subject = subject
        self.expires_at = expires_at
        self.backlog: deque[bytes] = deque()
        self.backlog_bytes = 0
        self.quiet = 0
        self.closed = False
        self.close_reason = ""
        self.written = 0  # bytes the kernel took, for metrics (stream/metrics.py)
        self._corked: list[bytes] | None = None
        self._loop = loop
        self._on_close = on_close
        self._max_bytes = max_queue_bytes
        self._max_frames = max_queue_frames
        self._writer = None
        self._reader = loop.io(self.fd, _READ)
        self._reader.start(self._on_readable)

    # -- delivery ---------------------------------------------------------------------------

    def deliver(self, channel: str, event_id: str, prev: str, body: bytes, frame: bytes) -> None:
        """A live event from the hub. ``frame`` is the shared one-channel frame (id + body);
        multi-channel connections build their own ``id:`` cursor. While the connection is still
        replaying, live events wait in ``pending`` for the hand-off."""
        if not self.live:
            self.pending.append((channel, event_id, prev, body))
            return
        self.positions[channel] = event_id
        if self.multi:
            frame = sse.id_line(cursor.format(self.positions, channel)) + body
        self.send(frame)

    def deliver_run(self, channel: str, last_id: str, frames: bytes) -> None:
        """Consecutive live events of a live one-channel connection, each framed with its id
        (the hub builds ``frames`` once for every such connection): one send."""
        self.positions[channel] = last_id
        # send() inlined: this runs once per delivery, the hottest Python line of the tier.
        if self.closed:
            return
        self.quiet = 0
        if self.backlog:
            self._queue(frames)
            return
        try:
            sent = self.sock.send(frames)
        except BlockingIOError:
            sent = 0
        except OSError:
            self.close("gone")
            return
        self.written += sent
        if sent < len(frames):
            self._queue(frames[sent:])

    def emit(self, channel: str, event_id: str, body: bytes) -> None:
        """Send one event now (replay and backfill), moving this connection's position."""
        self.positions[channel] = event_id
        self.send(sse.id_line(self.cursor(channel)) + body)

    def cursor(self, channel: str) -> str:
        """The resume cursor as of now, for an event on ``channel``."""
        if not self.multi:
            return self.positions[channel] or "0-0"
        known = {name: pos for name, pos in self.positions.items() if pos is not None}
        known.setdefault(channel, "0-0")
        return cursor.format(known, channel)

    def cork(self) -> None:
        """Hold what is sent until ``uncork()``, then write it in one send (a replay of many
        events). Only around code that does not switch greenlets."""
        if self._corked is None:
            self._corked = []

    def uncork(self) -> None:
        corked, self._corked = self._corked, None
        if corked:
            self.send(b"".join(corked) if len(corked) > 1 else corked[0])

    def send(self, data: bytes) -> None:
        """Write now what the kernel takes; queue the rest; close when the queue is too long."""
        if self.closed:
            return
        if self._corked is not None:
            self._corked.append(data)
            return
        self.quiet = 0
        if self.backlog:
            self._queue(data)
            return
        try:
            sent = self.sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError:
            self.close("gone")
            return
        self.written += sent
        if sent < len(data):
            self._queue(data[sent:])

    def _queue(self, data: bytes) -> None:
        self.backlog.append(data)
        self.backlog_bytes += len(data)
        if self.backlog_bytes > self._max_bytes or len(self.backlog) > self._max_frames:
            self.close("slow")
            return
        if self._writer is None:
            self._writer = self._loop.io(self.fd, _WRITE)
            self._writer.start(self._on_writable)

    def _on_writable(self) -> None:
        data = b"".join(self.backlog) if len(self.backlog) > 1 else self.backlog[0]
        self.backlog.clear()
        try:
            sent = self.sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError:
            self.close("gone")
            return
        self.written += sent
        if sent < len(data):
            rest = data[sent:]
            self.backlog.append(rest)
            self.backlog_bytes = len(rest)
            return
        self.backlog_bytes = 0
        self._writer.stop()
        self._writer = None

    def _on_readable(self) -> None:
        # A client never sends after its request; readable means it hung up (or misbehaves).
        try:
            data = self.sock.recv(4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.close("gone")

    # -- ending -----------------------------------------------------------------------------

    def close(self, reason: str = "closed") -> None:
        """Stop watching, close the socket and tell the owner; safe to call more than once."""
        if self.closed:
            return
        self.closed = True
        self.close_reason = reason
        self._reader.stop()
        if self._writer is not None:
            self._writer.stop()
            self._writer = None
        self.backlog.clear()
        self.backlog_bytes = 0
        self.pending = []
        with contextlib.suppress(OSError):
            self.sock.close()
        self._on_close(self)

    def finish(self, last_words: bytes) -> None:
        """End the stream on purpose: try to send ``last_words`` (e.g. a jittered ``retry:``),
        shut the write side so the client sees a clean end, then close."""
        if self.closed:
            return
        try:
            self.sock.send(b"".join(self.backlog) + last_words)
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        self.close("finished")
