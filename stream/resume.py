"""Resume: bring a new connection from its cursor to live with no gap and no duplicate.

Order matters: the connection is registered with the hub and its channels are subscribed first
(live events from then on wait in its ``pending`` list), then the log is replayed after the cursor,
then ``pending`` is released, skipping what the replay already sent. A replayed event whose
``prev`` is not the connection's position means history was lost: a documented ``eventgate.lost``
control event is sent first — never silent loss. Channels without a cursor start at the log's
current end; the stream's opening frame already carries the cursor of every start position
(stream/opening.py), so even a stream that ends before its first event resumes without a gap.
"""

from __future__ import annotations

import gevent
import redis

from eventgate.shared import sse
from eventgate.shared.events import (
    READ_BATCH,
    entry_fields,
    heads_from,
    id_key,
    queue_heads,
    read_from,
    read_heads,
)
from eventgate.shared.history import rewind_positions
from eventgate.shared.sse import event_body_bytes
from eventgate.stream.broker import Broker
from eventgate.stream.hub import Hub
from eventgate.stream.subscriber import Subscriber

#: A replay pauses while this much is still queued for a slow socket (bytes).
_REPLAY_PAUSE_BYTES = 256 * 1024
_POLL_SECONDS = 0.005
#: How long a hand-off waits for the hub before it asks the broker to read the log back: live
#: events in flight arrive within milliseconds; a hub on a replaced log never catches up alone.
_NUDGE_SECONDS = 0.25


class Unavailable(Exception):
    """Redis could not be reached or did not confirm in time; the stream ends with a retry (this
    is no refusal: the client reconnects and resumes from its cursor)."""


class Start:
    """Where a new connection starts on each channel: the client's cursor, or for channels it
    names no position for, the log's current end — or, for a stream without a cursor that
    asked for ``rewind`` events, before the last ``rewind`` events the log retains (the replay
    then sends them, and the hand-off goes on live as after any resume). Take ``positions``
    before the response head goes out, so that every event published after the client saw its
    200 is delivered.

    A channel this worker already follows live (its broker connected) starts where the hub
    stands when the Start is made, with no round trip: every later event reaches the
    connection live or, should the hub move on or drop the channel before the connection joins
    it, through the replay of ``Resume.open``. The hub may stand a few in-flight events behind
    the log's end; the client then gets those too, which is no gap and no duplicate.

    The log heads of the other channels are one round trip. An open makes one to Redis anyway
    before this (its admission: revocation, subject limit), so the Start rides along as a
    ``Rider`` (``queue``, ``take``, ``fail``): one round trip where there were two."""

    def __init__(
        self, resume: Resume, channels: list[str], requested: dict[str, str], rewind: int
    ) -> None:
        self.resume = resume
        self.channels = channels
        self.requested = requested
        self.rewind = rewind if not requested else 0
        self.following: dict[str, str] = {}
        if not self.rewind and resume.broker.connected:
            for name in channels:
                position = None if name in requested else resume._live_position(name)
                if position is not None:
                    self.following[name] = position
        #: The channels whose log heads are to be read (none for a rewind: it reads its own).
        self.unread = [] if self.rewind else [
            name for name in channels if name not in requested and name not in self.following
        ]
        self._replies: list | None = None
        self._error: BaseException | None = None

    def rider(self) -> Start | None:
        """Itself, if it has heads to read in another's round trip; else None."""
        return self if self.unread else None

    def queue(self, pipe: redis.client.Pipeline) -> None:
        queue_heads(pipe, self.unread)

    def take(self, replies: list) -> None:
        self._replies = replies

    def fail(self, error: BaseException) -> None:
        self._error = error

    def positions(self) -> dict[str, str]:
        """Raises Unavailable when Redis could not be read (in the round trip it rode along,
        or in its own)."""
        client = self.resume.client
        try:
            if self._error is not None:
                raise self._error
            if self.rewind:
                return rewind_positions(client, self.channels, self.rewind)
            if self._replies is not None:
                heads = heads_from(client, self.unread, self._replies)
            else:
                heads = read_heads(client, self.unread)
        except (redis.RedisError, OSError) as error:
            raise Unavailable(str(error)) from None
        requested, following = self.requested, self.following
        return {
            name: requested.get(name) or following.get(name) or heads[name]
            for name in self.channels
        }


class Resume:
    """How one worker brings new connections to live: ``positions`` before the response head
    goes out, then ``open``. Built once per worker over its hub, broker and Redis client."""

    def __init__(self, hub: Hub, broker: Broker, client: redis.Redis) -> None:
        self.hub = hub
        self.broker = broker
        self.client = client

    def positions(
        self, channels: list[str], requested: dict[str, str], rewind: int = 0
    ) -> dict[str, str]:
        """Where the connection starts on each channel (see Start); reads Redis now. Raises
        Unavailable when Redis cannot be read."""
        return self.start(channels, requested, rewind).positions()

    def start(self, channels: list[str], requested: dict[str, str], rewind: int = 0) -> Start:
        """Where a new connection will start (``Start.positions``): what the hub and the
        client's cursor say now, and which log heads still have to be read — in the admission's
        round trip (stream/limits.py takes the Start as its rider), else in one of their own."""
        return Start(self, channels, requested, rewind)

    def open(self, subscriber: Subscriber, positions: dict[str, str], timeout: float) -> None:
        """Register ``subscriber``, subscribe its channels, replay the log after ``positions``
        and hand it over to live delivery. Raises Unavailable when Redis fails; the caller ends
        the stream (the client reconnects and resumes)."""
        self.hub.add(subscriber)
        subscriber.positions.update(positions)
        try:
            if not self.broker.subscribe(list(subscriber.channels), timeout):
                raise Unavailable("Redis did not confirm the subscription in time")
            for name in subscriber.channels:
                # Standing where the hub stands, there is nothing to read back: the rest comes
                # live.
                if self._live_position(name) != subscriber.positions[name]:
                    self.replay(subscriber, name)
            self.hand_off(subscriber, timeout)
        except (redis.RedisError, OSError) as error:
            raise Unavailable(str(error)) from None

    def _live_position(self, name: str) -> str | None:
        """The id of the last event the hub delivered on ``name``, if it follows it without a
        gap being read back right now; else None."""
        channel = self.hub.channels.get(name)
        if channel is None or channel.backfilling:
            return None
        return channel.last

    def replay(self, subscriber: Subscriber, name: str) -> None:
        """Send every event of ``name`` after the subscriber's position, in log order, with an
        ``eventgate.lost`` notice first where the log no longer holds what came between — or no
        longer holds the position itself (a failover: the notice names the loss point the log
        goes on from, which may sort below the position; shared/events.py:read_from)."""
        hub, client = self.hub, self.client
        positions = subscriber.positions
        while not subscriber.closed:
            position = positions[name]
            page = read_from(client, name, position)
            entries = page.entries
            subscriber.cork()  # one send per batch read: a resuming crowd replays the same events
            try:
                if page.after != position:
                    subscriber.emit(name, page.after, sse.lost_body(name, position, page.after))
                    hub.lost += 1
                for entry_id, fields in entries:
                    event_id, prev, event_type, data = entry_fields(entry_id, fields)
                    if prev != positions[name]:
                        subscriber.emit(name, prev, sse.lost_body(name, positions[name], prev))
                        hub.lost += 1
                    subscriber.emit(name, event_id, event_body_bytes(event_type, data))
            finally:
                subscriber.uncork()
            hub.replayed += len(entries)
            if len(entries) < READ_BATCH:
                return
            while subscriber.backlog_bytes > _REPLAY_PAUSE_BYTES and not subscriber.closed:
                gevent.sleep(_POLL_SECONDS)

    def hand_off(self, subscriber: Subscriber, timeout: float) -> None:
        """Release the live events that arrived during replay, then switch the subscriber to
        live.

        A held event whose ``prev`` is not the subscriber's position reveals a gap (the replay
        stopped short of it): its channel is replayed again first. The switch happens only once
        the subscriber stands exactly where the hub does on every channel; if the hub is behind
        (its live feed lags the log the replay read), wait for it, so that nothing the hub
        broadcasts later is a duplicate for this connection. Raises Unavailable when the hub
        does not catch up within ``timeout`` seconds.

        After a failover the hub may stand at an id the new log never had while the replay
        already moved the subscriber onto the new log; the hub notices on its next event or
        reconnect, and, should neither come, when the hand-off asks the broker to read back."""
        hub = self.hub
        loop = gevent.get_hub().loop
        deadline = loop.now() + timeout
        nudge_at: float | None = loop.now() + _NUDGE_SECONDS
        while not subscriber.closed:
            pending, subscriber.pending = subscriber.pending, []
            gap = None
            subscriber.cork()
            try:
                for index, (name, event_id, prev, body) in enumerate(pending):
                    position = subscriber.positions[name]
                    # What follows the position comes first whatever its id: a loss notice
                    # after a failover may point below it (its ``prev`` is the last_seen).
                    if prev != position:
                        if id_key(event_id) <= id_key(position):
                            continue
                        gap = name
                        subscriber.pending = pending[index:] + subscriber.pending
                        break
                    subscriber.emit(name, event_id, body)
            finally:
                subscriber.uncork()
            if gap is not None:
                before = subscriber.positions[gap]
                self.replay(subscriber, gap)
                if subscriber.positions[gap] == before and subscriber.pending:
                    # The log holds nothing after the position, so it does not hold the held
                    # event either: it came live from a log a failover replaced. Reading back
                    # again would never place it.
                    subscriber.pending.pop(0)
                continue
            if subscriber.pending:
                continue
            behind = []
            for name in subscriber.channels:
                channel = hub.channels.get(name)
                last = None if channel is None else channel.last
                if last is not None and last != subscriber.positions[name]:
                    behind.append(name)
            if not behind:
                for name in subscriber.channels:
                    channel = hub.channels.get(name)
                    if channel is not None and channel.last is None:
                        channel.last = subscriber.positions[name]
                subscriber.live = True
                return
            now = loop.now()
            if now > deadline:
                raise Unavailable("the live feed did not catch up with the log in time")
            if nudge_at is not None and now > nudge_at:
                # Still apart: the hub may stand where the log no longer goes (a failover it
                # has not noticed, with no event and no reconnect since). It reads its log back.
                nudge_at = None
                for name in behind:
                    self.broker.mend(name)
            gevent.sleep(_POLL_SECONDS)
