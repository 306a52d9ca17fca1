"""Hub: which local subscribers listen to which channel, and fan-out of each event to them.

Each event is turned into bytes once per process: the shared ``event:``/``data:`` body and, for
one-channel connections, the whole frame with its ``id:``. Per channel the hub also remembers the
id of the last event it delivered, so that an event whose ``prev`` is not that id reveals a gap in
the live feed (pub/sub dropped something): the broker then backfills from the log. No Redis I/O
here — that is the broker's; socket writes are the subscribers'.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from eventgate.shared import sse
from eventgate.stream.lag import LagHistogram
from eventgate.stream.subscriber import Subscriber


class Channel:
    """Local state of one subscribed channel."""

    __slots__ = ("name", "subscribers", "last", "held", "backfilling")

    def __init__(self, name: str) -> None:
        self.name = name
        self.subscribers: set[Subscriber] = set()
        self.last: str | None = None
        self.held: list[tuple[str, str, bytes]] = []
        self.backfilling = False


def _tell_nobody(name: str) -> None:
    """Until a broker says otherwise, a channel that loses its last subscriber needs no one told."""


class Hub:
    """Channel → subscribers. The broker that feeds the hub registers with ``when_empty`` to
    hear when a channel lost its last local subscriber."""

    def __init__(self) -> None:
        self.channels: dict[str, Channel] = {}
        self.subscribers: set[Subscriber] = set()
        self._on_last: Callable[[str], None] = _tell_nobody
        self.delivered = 0
        # Plain counters copied to Prometheus once a second by stream/metrics.py (never per event).
        self.events = 0
        self.replayed = 0
        self.lost = 0
        self.slow_disconnects = 0
        self.closed_written = 0
        self.lag = LagHistogram()

    def when_empty(self, on_last: Callable[[str], None]) -> None:
        """Call ``on_last(name)`` whenever channel ``name`` loses its last local subscriber (the
        broker unsubscribes it). It may be called from a libev callback: it must not block."""
        self._on_last = on_last

    def add(self, subscriber: Subscriber) -> list[str]:
        """Register a connection on all its channels; returns the channels that are new to
        this process (the broker must subscribe them before the connection replays)."""
        self.subscribers.add(subscriber)
        new = []
        for name in subscriber.channels:
            channel = self.channels.get(name)
            if channel is None:
                channel = self.channels[name] = Channel(name)
                new.append(name)
            channel.subscribers.add(subscriber)
        return new

    def remove(self, subscriber: Subscriber) -> None:
        """Forget a connection; a channel whose last local subscriber left is dropped."""
        self.subscribers.discard(subscriber)
        self.closed_written += subscriber.written
        if subscriber.close_reason == "slow":
            self.slow_disconnects += 1
        for name in subscriber.channels:
            channel = self.channels.get(name)
            if channel is None:
                continue
            channel.subscribers.discard(subscriber)
            if not channel.subscribers:
                del self.channels[name]
                self._on_last(name)

    def broadcast(self, name: str, event_id: str, prev: str, body: bytes) -> None:
        """Deliver one event, already in order, to every local subscriber of ``name``."""
        channel = self.channels.get(name)
        if channel is None:
            return
        channel.last = event_id
        frame = sse.id_line(event_id) + body
        for subscriber in tuple(channel.subscribers):
            subscriber.deliver(name, event_id, prev, body, frame)
        self.delivered += len(channel.subscribers)
        self.events += 1
        self.lag.record(event_id)

    def broadcast_all(self, events: list[tuple[str, str, str, bytes]]) -> None:
        """Deliver ``(channel, id, prev, body)`` live events that arrived together, in publish
        order, already accepted (the broker moved each channel's ``last``).

        Coalescing: a live one-channel connection gets all of its channel's events of the batch
        in one send (the kernel's ``send()`` is most of the cost of a delivery, whatever its
        size). Connections with several channels, or still replaying, get them one by one, in
        publish order across channels."""
        if len(events) == 1:
            self.broadcast(*events[0])
            return
        runs: dict[str, list[tuple[str, str, str, bytes]]] = {}
        for event in events:
            run = runs.get(event[0])
            if run is None:
                runs[event[0]] = [event]
            else:
                run.append(event)
        one_by_one: dict[str, list[Subscriber]] = {}
        for name, run in runs.items():
            channel = self.channels.get(name)
            if channel is None:
                continue
            frames = b"".join([sse.id_line(event[1]) + event[3] for event in run])
            last_id = run[-1][1]
            subscribers = tuple(channel.subscribers)
            for subscriber in subscribers:
                if subscriber.live and not subscriber.multi:
                    subscriber.deliver_run(name, last_id, frames)
                else:
                    one_by_one.setdefault(name, []).append(subscriber)
            self.delivered += len(subscribers) * len(run)
            self.events += len(run)
            for event in run:
                self.lag.record(event[1])
        if one_by_one:
            for name, event_id, prev, body in events:
                subscribers = one_by_one.get(name)
                if subscribers:
                    frame = sse.id_line(event_id) + body
                    for subscriber in subscribers:
                        subscriber.deliver(name, event_id, prev, body, frame)

    def broadcast_loss(self, name: str, last_seen: str, resumes_after: str) -> None:
        """Tell every live subscriber of ``name`` that events after ``last_seen`` are lost."""
        channel = self.channels.get(name)
        if channel is None:
            return
        channel.last = resumes_after
        body = sse.lost_body(name, last_seen, resumes_after)
        self.lost += len(channel.subscribers)
        for subscriber in tuple(channel.subscribers):
            if subscriber.live:
                subscriber.emit(name, resumes_after, body)
            else:
                subscriber.pending.append((name, resumes_after, last_seen, body))

    def beat(self, comment: bytes) -> None:
        """Called every half heartbeat period: send ``comment`` to every live connection that
        was sent nothing for two calls, so none stays silent longer than one full period."""
        for subscriber in tuple(self.subscribers):
            subscriber.quiet += 1
            if subscriber.quiet >= 2 and subscriber.live:
                subscriber.send(comment)

    def expire(self, now: float, last_words: Callable[[Subscriber], bytes]) -> None:
        """End every stream whose token expired, with a control event saying so."""
        for subscriber in tuple(self.subscribers):
            if subscriber.expires_at <= now:
                subscriber.finish(last_words(subscriber))

    def revoke(self, subject: str, last_words: Callable[[Subscriber], bytes]) -> int:
        """End every stream of token subject ``subject`` (a revocation); returns how many."""
        ended = [s for s in self.subscribers if s.subject == subject]
        for subscriber in ended:
            subscriber.finish(last_words(subscriber))
        return len(ended)

    def finish_all(self, last_words: Callable[[], bytes], subscribers: Iterable | None = None):
        """End every stream on purpose (graceful stop); ``last_words`` per connection."""
        for subscriber in tuple(self.subscribers if subscribers is None else subscribers):
            subscriber.finish(last_words())
