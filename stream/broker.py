"""Broker: the one Redis pub/sub connection of a stream worker, read by one greenlet.

Channels are subscribed when their first local client arrives and unsubscribed after the last
leaves. redis-py is given no retries on this connection, so every drop (Redis restart, CLIENT KILL,
output-buffer limit) surfaces here; the broker reconnects with backoff and jitter, resubscribes,
and backfills from each channel's log what was published while it was away. A gap in the live
feed that slips past all that (an event whose ``prev`` is not the last one delivered) triggers
the same backfill. Only this module touches Redis pub/sub; a PubSub is not greenlet-safe, so one
greenlet reads and every write goes through one lock.

Under Sentinel (shared/primary.py) a drop is not the only way to lose the primary: a primary
demoted by a failover keeps serving pub/sub as a replica, so a connection that looks healthy can
sit on the wrong server. A greenlet of its own asks the sentinels every few seconds and, when
they name another primary than the one the connection is on, ends the connection: the reconnect
above then subscribes on the new primary and backfills from its log.

The read loop is the hot path of the whole tier (see docs/performance.md): each wake-up reads
what the socket holds in one ``recv`` and parses every complete reply with hiredis, without
redis-py's per-message work, then hands the hub all the events of that wake-up at once, so a
subscriber behind on several events gets them in one ``send``.
"""

from __future__ import annotations

import contextlib
import logging
import random
import socket
import time

import gevent
import gevent.event
import gevent.lock
import redis

try:
    import hiredis
except ImportError:  # redis[hiredis] is a dependency; without it the read loop is slower
    hiredis = None

from eventgate.shared import keys, revocations, sse
from eventgate.shared.config import Config
from eventgate.shared.events import READ_BATCH, entry_fields, id_key, read_from
from eventgate.shared.primary import CHECK_SECONDS, primary_of
from eventgate.shared.sse import event_body_bytes
from eventgate.stream.hub import Channel, Hub

log = logging.getLogger("eventgate.stream.broker")

_ERRORS = (redis.RedisError, OSError)
#: How long a worker remembers a revocation for streams that were opening as it came (seconds):
#: far longer than the open path between its Redis check and the hub.
RECENT_SECONDS = 30.0


class Replies:
    """Every pub/sub reply the connection holds right now: one socket read per wake-up, parsed
    by a hiredis reader of our own. Only for a connection no one else reads (redis-py's PubSub
    only writes on it: SUBSCRIBE, UNSUBSCRIBE and PING all get their replies here).

    ``read()`` waits, with no timer (a timer per wait costs as much as the rest of a wake-up),
    until the socket is readable and returns the raw replies (``[b"message", channel, data]``,
    ``[b"subscribe", channel, count]``, ``[b"pong", b""]``...). A closed connection or an error
    reply raises (the broker reconnects); ``interrupt()`` makes a waiting ``read()`` raise."""

    def __init__(self, pubsub: redis.client.PubSub) -> None:
        self._pubsub = pubsub
        self._sock = getattr(pubsub.connection, "_sock", None)
        self._reader = None
        self._watcher = None
        if hiredis is not None and self._sock is not None:
            self._reader = hiredis.Reader(
                protocolError=redis.exceptions.InvalidResponse,
                replyError=redis.exceptions.ResponseError,
            )
            self._watcher = gevent.get_hub().loop.io(self._sock.fileno(), 1)
        self._buffer = bytearray(1 << 16)

    def interrupt(self) -> None:
        """End the connection under the reader: its ``read()`` raises ConnectionError."""
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        if self._watcher is not None:
            self._watcher.close()
            self._watcher = None

    def read(self) -> list:
        if self._reader is None:  # redis-py's own parser: one reply per call
            return [self._pubsub.parse_response(block=True)]
        gevent.get_hub().wait(self._watcher)
        size = self._sock.recv_into(self._buffer)  # readable: returns without waiting
        if size == 0:
            raise redis.ConnectionError("Redis closed the pub/sub connection")
        reader = self._reader
        reader.feed(self._buffer, 0, size)
        replies = []
        while (reply := reader.gets()) is not False:
            if isinstance(reply, Exception):
                raise reply
            replies.append(reply)
        return replies


class Broker:
    """Owns the pub/sub connection and feeds the hub. ``start()`` once per worker, after fork.
    It registers with ``hub`` to hear when a channel's last local subscriber left."""

    def __init__(
        self, config: Config, hub: Hub, client: redis.Redis, pubsub_client: redis.Redis
    ) -> None:
        self.config = config
        self.hub = hub
        hub.when_empty(self.release)
        self.redis = client
        self._pubsub_client = pubsub_client
        self._pubsub: redis.client.PubSub | None = None
        self._active: dict[str, gevent.event.Event] = {}
        self._release: set[str] = set()
        self._wake = gevent.event.Event()
        self._lock = gevent.lock.Semaphore()
        self._greenlets: list[gevent.Greenlet] = []
        self._last_pong = 0.0
        self._replies: Replies | None = None
        #: subject -> (revoked at, epoch s; heard at, monotonic s), for ``revoked``.
        self.recent_revocations: dict[str, tuple[float, float]] = {}
        self.connected = False
        self.reconnects = 0
        self.backfills = 0
        #: Under Sentinel, the worker's Primary (shared by its pools); None for one Redis.
        self.primary = primary_of(pubsub_client)
        # A reconnect under Sentinel asks for the new primary, usually named within seconds of
        # a failure: retry at least every second rather than back off to 5 s.
        self._max_backoff = 1.0 if self.primary is not None else 5.0

    @property
    def failovers(self) -> int:
        """Switches of primary this worker saw (0 with one Redis)."""
        return self.primary.switches if self.primary is not None else 0

    def unreachable(self) -> bool:
        """Whether this worker knows it cannot serve a new stream at all (see ShardedBroker:
        with one Redis the stream opens anyway and asks to be retried)."""
        return False

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        self._greenlets = [
            gevent.spawn(self._run), gevent.spawn(self._janitor), gevent.spawn(self._keepalive)
        ]
        if self.primary is not None:
            self._greenlets.append(gevent.spawn(self._follow_primary))

    def stop(self) -> None:
        gevent.killall(self._greenlets, block=False)
        self._disconnect()

    # -- subscriptions ------------------------------------------------------------------------

    def subscribe(self, channels: list[str], timeout: float) -> bool:
        """Make sure every channel in ``channels`` is subscribed on Redis; block the calling
        greenlet until Redis confirmed them all (True) or ``timeout`` passed (False)."""
        new = [name for name in channels if name not in self._active]
        for name in channels:
            self._release.discard(name)
        for name in new:
            self._active[name] = gevent.event.Event()
        if new:
            self._subscribe_new(new)
        deadline = time.monotonic() + timeout
        for name in channels:
            confirmed = self._active.get(name)
            if confirmed is None or not confirmed.wait(max(0.0, deadline - time.monotonic())):
                return False
        return True

    def _subscribe_new(self, names: list[str]) -> None:
        """Ask Redis for the live feed of ``names`` (just made active)."""
        if self.connected:
            # On failure the reader sees the drop too; it resubscribes every active channel.
            with contextlib.suppress(*_ERRORS):
                self._write("subscribe", *[keys.live_channel(name) for name in names])

    def _unsubscribe_gone(self, names: list[str]) -> None:
        """Tell Redis the live feed of ``names`` (no longer active) is not wanted."""
        if self.connected:
            # On failure, a reconnect subscribes only what is still active anyway.
            with contextlib.suppress(*_ERRORS):
                self._write("unsubscribe", *[keys.live_channel(name) for name in names])

    def release(self, name: str) -> None:
        """The hub's last local subscriber of ``name`` left; unsubscribe soon. Never blocks."""
        self._release.add(name)
        self._wake.set()

    def _janitor(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            gone = [n for n in self._release if n not in self.hub.channels and n in self._active]
            self._release.clear()
            for name in gone:
                del self._active[name]
            if gone:
                self._unsubscribe_gone(gone)

    def _write(self, command: str, *names: str) -> None:
        with self._lock:
            if self._pubsub is None:
                raise redis.ConnectionError("not connected")
            getattr(self._pubsub, command)(*names)

    # -- the reader ---------------------------------------------------------------------------

    def _run(self) -> None:
        backoff = 0.1
        first = True
        while True:
            try:
                self._connect()
                backoff = 0.1
                if not first:
                    self.reconnects += 1
                    log.warning("pub/sub reconnected; backfilling %d channels", len(self._active))
                first = False
                self.backfill_all()
                self._read()
            except _ERRORS as error:
                if self.connected:
                    log.warning("pub/sub connection lost: %s", type(error).__name__)
            self._disconnect()
            gevent.sleep(backoff * random.uniform(0.5, 1.5))
            backoff = min(backoff * 2, self._max_backoff)

    def _connect(self) -> None:
        pubsub = self._pubsub_client.pubsub(ignore_subscribe_messages=False)
        with self._lock:
            self._pubsub = pubsub
        # One control channel keeps the connection in subscribed mode even with no clients.
        self._write("subscribe", keys.CONTROL_CHANNEL)
        # Writing yields (the connect, the sends): a channel made active meanwhile (a stream
        # opening, e.g. one that queued while this worker booted) saw the broker not yet
        # connected and left its SUBSCRIBE to this loop. Nothing yields between the last look
        # at ``_active`` and ``connected``; later channels write their own. Were one left out,
        # every stream on it would wait for a confirmation that never comes, for as long as
        # the channel keeps a local subscriber.
        sent: set[str] = set()
        while pending := self._active.keys() - sent:
            self._write("subscribe", *[keys.live_channel(name) for name in pending])
            sent |= pending
        self._last_pong = time.monotonic()
        self.connected = True

    def _disconnect(self) -> None:
        self.connected = False
        for confirmed in self._active.values():
            confirmed.clear()
        with self._lock:
            pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            with contextlib.suppress(_ERRORS):
                pubsub.close()

    def _read(self) -> None:
        pubsub = self._pubsub
        assert pubsub is not None
        self._replies = replies = Replies(pubsub)
        try:
            while True:
                self._dispatch_all(pubsub, replies.read())
        finally:
            self._replies = None
            replies.close()

    def _keepalive(self) -> None:
        """PING the pub/sub connection every heartbeat period (at least 1 s). A connection that
        answered no PING for three periods is dead (Redis stopped, a network cut that closed
        nothing): the reader is interrupted and reconnects."""
        ping_every = max(self.config.heartbeat_seconds, 1.0)
        while True:
            gevent.sleep(ping_every)
            replies = self._replies
            if not self.connected or replies is None:
                continue
            if time.monotonic() - self._last_pong > 3 * ping_every:
                log.warning("Redis stopped answering PING on pub/sub")
                replies.interrupt()
                continue
            with contextlib.suppress(*_ERRORS):
                self._write("ping")

    def _follow_primary(self) -> None:
        """When a sentinel announces a new primary (within milliseconds, see Primary.watch),
        and else every CHECK_SECONDS by the worker's poll of the sentinels: when the pub/sub
        connection is on
        another server, end it (the reader reconnects to the current one). A sentinel that
        does not answer changes nothing: the connection stays where it is."""
        primary = self.primary
        assert primary is not None
        pushed = gevent.event.Event()
        primary.watch(lambda _address: pushed.set())
        while True:
            if pushed.wait(CHECK_SECONDS):
                pushed.clear()
                named = primary.address
            else:
                # The worker's one poll, shared with its command connections (Primary.named).
                named = primary.named()
            pubsub, replies = self._pubsub, self._replies
            connection = pubsub.connection if pubsub is not None else None
            if named is None or replies is None or connection is None:
                continue
            if (connection.host, connection.port) != named:
                log.warning("the sentinels name another primary: moving pub/sub there")
                replies.interrupt()

    def _dispatch_all(self, pubsub: redis.client.PubSub, replies: list) -> None:
        """Accept the events of one wake-up in order, then deliver them together. Nothing
        switches greenlets in between, so no one sees an accepted event not yet delivered."""
        accepted: list[tuple[str, str, str, bytes]] = []
        for reply in replies:
            # A list under RESP2; hiredis's PushNotification (a list) under RESP3.
            if isinstance(reply, list) and len(reply) == 3 and reply[0] == b"message":
                try:
                    name = keys.channel_of_live(reply[1].decode("utf-8"))
                except ValueError:
                    # Not a live feed: the control channel. The try costs the events nothing;
                    # comparing every reply's channel first would cost each one.
                    self.on_control(reply[2])
                    continue
                self._accept(name, reply[2], accepted)
            else:
                # Rare replies go through redis-py, which keeps its subscription book in step.
                message = pubsub.handle_message(reply)
                if message is not None:
                    self._dispatch(message)
        if accepted:
            self.hub.broadcast_all(accepted)

    def _dispatch(self, message: dict) -> None:
        kind = message["type"]
        if kind == "message":
            raw = message["channel"].decode("utf-8")
            if keys.is_live(raw):
                self.on_message(keys.channel_of_live(raw), message["data"])
            else:
                self.on_control(message["data"])
        elif kind == "subscribe":
            raw = message["channel"].decode("utf-8")
            if keys.is_live(raw):
                confirmed = self._active.get(keys.channel_of_live(raw))
                if confirmed is not None:
                    confirmed.set()
        elif kind == "pong":
            self._last_pong = time.monotonic()

    # -- control messages -----------------------------------------------------------------------

    def on_control(self, message: bytes) -> None:
        """A message on the control channel (``keys.CONTROL_CHANNEL``). Never blocks."""
        revocation = revocations.parse_control(message)
        if revocation is None:
            return
        subject, revoked_at = revocation
        now = time.monotonic()
        recent = self.recent_revocations
        for name in [name for name, (_, seen) in recent.items() if now - seen > RECENT_SECONDS]:
            del recent[name]
        recent[subject] = (max(revoked_at, recent.get(subject, (0.0, 0.0))[0]), now)
        ended = self.hub.revoke(
            subject, lambda subscriber: sse.revoked(subscriber.cursor(subscriber.channels[0]),
                                                    subject)
        )
        if ended:
            log.info("ended %d streams of a revoked subject", ended)

    def revoked(self, subject: str, issued_at: float) -> bool:
        """Whether a revocation this worker heard of in the last ``RECENT_SECONDS`` covers a
        token of ``subject`` signed at ``issued_at``. A stream admitted just before the
        revocation was stored, whose message came before the stream joined the hub, would
        otherwise stay open: the opener asks this right before the hub takes the stream (no
        greenlet switch in between). A dict lookup, only while there were recent ones."""
        recent = self.recent_revocations.get(subject) if self.recent_revocations else None
        return recent is not None and issued_at <= recent[0]

    # -- live events and backfill -------------------------------------------------------------

    def on_message(self, name: str, payload: bytes) -> None:
        """One live event from pub/sub; in order per channel. Never blocks."""
        accepted: list[tuple[str, str, str, bytes]] = []
        self._accept(name, payload, accepted)
        if accepted:
            self.hub.broadcast_all(accepted)

    def _accept(self, name: str, payload: bytes, accepted: list) -> None:
        """Check one live event against its channel's position. In sequence: it joins
        ``accepted`` (to be delivered by the caller) and becomes the channel's ``last``; after a
        gap, or while a backfill runs: it is held for the backfill."""
        channel = self.hub.channels.get(name)
        if channel is None:
            return
        try:
            event_id, prev, event_type, data = payload.split(b"\n", 3)
        except ValueError:
            log.error("dropped a malformed pub/sub payload on %s", name)
            return
        item = (event_id.decode("ascii"), prev.decode("ascii"), event_body_bytes(event_type, data))
        if channel.backfilling:
            channel.held.append(item)
        elif channel.last is not None and item[1] != channel.last:
            channel.held.append(item)
            self._start_backfill(channel)
        else:
            channel.last = item[0]
            accepted.append((name, *item))

    def backfill_all(self) -> None:
        """After a reconnect: every channel that already delivered something reads back from its
        log what was published while the connection was down."""
        for channel in list(self.hub.channels.values()):
            if channel.last is not None:
                self._start_backfill(channel)

    def mend(self, name: str) -> None:
        """Read ``name`` back from its log now, as after a gap in the live feed: a connection
        found the hub standing apart from the log (a failover it has not noticed yet)."""
        channel = self.hub.channels.get(name)
        if channel is not None and channel.last is not None:
            self._start_backfill(channel)

    def _start_backfill(self, channel: Channel) -> None:
        if not channel.backfilling:
            channel.backfilling = True
            gevent.spawn(self._backfill, channel)

    def _backfill(self, channel: Channel) -> None:
        self.backfills += 1
        backoff = 0.05
        stuck = None
        try:
            while self.hub.channels.get(channel.name) is channel:
                try:
                    self._catch_up(channel)
                except _ERRORS:
                    gevent.sleep(backoff * random.uniform(0.5, 1.5))
                    backoff = min(backoff * 2, 2.0)
                    continue
                # No greenlet switch from here to the end of the loop body: nothing can slip in.
                held, channel.held = channel.held, []
                for index, (event_id, prev, body) in enumerate(held):
                    if id_key(event_id) <= id_key(channel.last):
                        continue
                    if prev != channel.last:
                        channel.held = held[index:]
                        break
                    self.hub.broadcast(channel.name, event_id, prev, body)
                if not channel.held:
                    return
                if stuck == (channel.held[0], channel.last):
                    # Read to the log's end twice and still out of sequence: the log does not
                    # hold what these live events follow (they came from a log a failover
                    # replaced). Reading back again would never place them.
                    log.warning("channel %s: dropped %d live events the log does not hold",
                                channel.name, len(channel.held))
                    channel.held = []
                    return
                stuck = (channel.held[0], channel.last)
        finally:
            channel.backfilling = False

    def _catch_up(self, channel: Channel) -> None:
        name = channel.name
        while True:
            page = read_from(self.redis, name, channel.last)
            if page.after != channel.last:
                log.warning("channel %s: the log no longer holds %s; it goes on after %s", name,
                            channel.last, page.after)
                self.hub.broadcast_loss(name, channel.last, page.after)
            for entry_id, fields in page.entries:
                event_id, prev, event_type, data = entry_fields(entry_id, fields)
                if prev != channel.last:
                    log.warning("channel %s: events after %s are no longer in the log", name,
                                channel.last)
                    self.hub.broadcast_loss(name, channel.last, prev)
                self.hub.broadcast(name, event_id, prev, event_body_bytes(event_type, data))
            if len(page.entries) < READ_BATCH:
                return
