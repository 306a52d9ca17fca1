"""StreamLimits: whether a new stream may open — per worker process and per token subject.

Both are decided before the first byte of the response, so a refusal is a real status with a JSON
body and ``Retry-After``: ``503 server_busy`` when this worker already holds
``max_streams_per_worker`` streams (counted here, in-process), ``429 too_many_streams`` when the
token's subject holds ``max_streams_per_subject`` streams across every worker (counted in Redis).

The per-subject count must survive what no cleanup code sees: a worker killed with SIGKILL, or cut
by gunicorn at its graceful timeout, never says that its streams closed. So each stream holds a
*lease*: a member of the subject's sorted set (``shared.keys.subject_streams_key``) scored with
its expiry in Redis server time (the workers' clocks do not matter). A keeper greenlet renews the
leases of this worker's open streams every heartbeat period and releases a closed stream's lease
at once; expired members are pruned whenever the subject connects, so a dead worker's leases lapse
within ``lease_seconds``.

The same round trip checks the subject's revocation (shared/revocations.py): the admission
script reads it before taking a lease, so a stream open with a subject costs no extra Redis
round trip (with the subject limit off, it costs one GET). Streams without a subject have no
revocation and cost nothing. What else the open must read before its first byte (the log heads
it starts at, stream/resume.py) rides along in that round trip (``Rider``).

The same keeper sends this worker's presence leases (stream/presence.py, shared/presence.py):
one lease per stream and channel, added, renewed and released in the pipelines above.

When Redis cannot be reached neither the subject limit nor revocation is enforced: the stream
would end at once anyway with a retry, and a Redis outage must not turn into refusals an
EventSource never retries.
Nothing here blocks inside a libev callback: ``release`` only queues work for the keeper.

A worker that reaches ``max_streams_per_worker`` says so (``watch_room``): its acceptor
(stream/acceptor.py) then leaves new connections to the workers that still have room, so that a
503 is the answer only when every worker is full.
"""

from __future__ import annotations

import logging
import math
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import gevent.event
import redis

from eventgate.shared import keys, revocations
from eventgate.shared.config import Config
from eventgate.shared.errors import TokenRevoked, TooBusy, TooManyStreams
from eventgate.shared.presence import PresenceScript, lease_seconds
from eventgate.stream.presence import PresenceLeases

log = logging.getLogger("eventgate.stream")

#: Leases renewed per Redis round trip.
_RENEW_BATCH = 500

# KEYS[1]: the subject's set, KEYS[2]: its revocation. ARGV: connection id, limit, lease ms,
# the token's issue time (epoch s). 1 admitted, 0 refused (full), -1 refused (revoked).
_ADMIT = """
local revoked = redis.call('GET', KEYS[2])
if revoked and tonumber(ARGV[4]) <= tonumber(revoked) then
  return -1
end
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local lease = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  return 0
end
redis.call('ZADD', KEYS[1], now + lease, ARGV[1])
redis.call('PEXPIRE', KEYS[1], 2 * lease)
return 1
"""

# KEYS: one subject set per lease. ARGV[1]: lease ms, then the connection ids, in KEYS order.
# ZADD, not ZADD XX: a lease lost with Redis's data comes back at the next renewal.
_RENEW = """
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local lease = tonumber(ARGV[1])
for i, key in ipairs(KEYS) do
  redis.call('ZADD', key, now + lease, ARGV[i + 1])
  redis.call('PEXPIRE', key, 2 * lease)
end
return #KEYS
"""


class Rider(Protocol):
    """Commands of another part of an open that go to Redis in the admission's round trip
    (stream/resume.py's Start: the log heads). ``queue`` them on the pipeline; ``take`` gets
    their replies (errors among them as exceptions), or ``fail`` the error that lost them all.
    Neither is called when the admission makes no round trip (no subject) or under Cluster."""

    def queue(self, pipe: redis.client.Pipeline) -> None: ...
    def take(self, replies: list) -> None: ...
    def fail(self, error: BaseException) -> None: ...


@dataclass(eq=False)
class Lease:
    """One admitted stream. ``key`` is its subject's set, or None when it holds no Redis lease
    (no subject, no per-subject limit, or Redis was unreachable at admission)."""

    key: str | None = None
    #: Its member in the subject's set, drawn only when it takes a Redis lease (most streams
    #: of an open worker never do, and the random draw is a system call per accept).
    member: str = ""
    released: bool = False
    #: Its channels and its member in their presence sets ("" until it holds one).
    channels: Sequence[str] = ()
    presence: str = ""


class StreamLimits:
    """Admission and leases of one stream worker. ``admit`` before the response head goes out;
    ``release`` from the connection's close callback (any context); run ``keep`` in a greenlet."""

    def __init__(self, client: redis.Redis, config: Config) -> None:
        self.per_subject = config.max_streams_per_subject
        self.per_worker = config.max_streams_per_worker
        self.period_seconds = config.heartbeat_seconds
        self.lease_seconds = lease_seconds(config)
        self.worker_retry_after = max(1, math.ceil(config.retry_ms / 1000))
        self.open = 0
        self.refused_worker = 0
        self.refused_subject = 0
        self._client = client
        self._admit = client.register_script(_ADMIT)
        self._renew = client.register_script(_RENEW)
        self._leases: set[Lease] = set()
        self._released: list[tuple[str, str]] = []
        self._wake = gevent.event.Event()
        self.presence = PresenceLeases(
            PresenceScript(client, config), config.presence_grace_seconds
        )
        self._on_full: Callable[[], None] = _nothing
        self._on_room: Callable[[], None] = _nothing

    def watch_room(self, full: Callable[[], None], room: Callable[[], None]) -> None:
        """Call ``full()`` when this worker comes to hold ``max_streams_per_worker`` streams
        (counted from admission on), ``room()`` when it holds fewer again. Either may be called
        in any context, a libev callback too: neither may block."""
        self._on_full, self._on_room = full, room

    def admit(
        self,
        subject: str | None,
        issued_at: float = 0.0,
        channels: Sequence[str] = (),
        rider: Rider | None = None,
    ) -> Lease:
        """A lease for a new stream of ``subject`` with a token signed at ``issued_at``, on
        ``channels`` (its presence); raises TooBusy (503) when this worker is full, TokenRevoked
        (401) when the subject was revoked since the token was signed, and TooManyStreams (429)
        when the subject is full. Call ``release`` exactly once after. ``rider``'s commands go
        in the same round trip as the admission's, if it makes one (see Rider)."""
        if self.per_worker and self.open >= self.per_worker:
            self.refused_worker += 1
            raise TooBusy(
                f"this stream server holds {self.per_worker} streams, the most it may; "
                "retry in a moment.",
                self.worker_retry_after,
            )
        # Counted before any Redis round trip (a greenlet switch), so that concurrent admissions
        # in this worker cannot all pass the check above.
        self.open += 1
        if self.open == self.per_worker:
            self._on_full()
        lease = Lease()
        if subject is None:
            return self._present(lease, subject, channels)
        if not self.per_subject:
            self._check_revoked(subject, issued_at, lease, rider)
            return self._present(lease, subject, channels)
        key = keys.subject_streams_key(subject)
        lease.member = secrets.token_hex(8)
        lease_ms = int(self.lease_seconds * 1000)
        script_keys = [key, keys.revoked_key(subject)]
        script_args = [lease.member, self.per_subject, lease_ms, repr(float(issued_at))]
        rider = self._rides(rider)
        try:
            if rider is None:
                admitted = self._admit(keys=script_keys, args=script_args)
            else:
                admitted = self._along(
                    lambda pipe: pipe.evalsha(self._admit.sha, 2, *script_keys, *script_args),
                    rider,
                )
                if isinstance(admitted, redis.exceptions.NoScriptError):
                    # A Redis that never saw the script (restarted, failed over): the Script
                    # object loads it and runs it again.
                    admitted = self._admit(keys=script_keys, args=script_args)
                elif isinstance(admitted, Exception):
                    raise admitted
        except (redis.RedisError, OSError) as error:
            log.warning("per-subject stream limit not checked, Redis failed: %s", error)
            return self._present(lease, subject, channels)
        if admitted == -1:
            self._refuse(lease)
            raise _revoked()
        if not admitted:
            self._refuse(lease)
            self.refused_subject += 1
            raise TooManyStreams(
                f"this token's subject already holds {self.per_subject} open streams, the most "
                "it may: close one, or retry once abandoned ones have expired.",
                math.ceil(self.lease_seconds),
            )
        lease.key = key
        self._leases.add(lease)
        return self._present(lease, subject, channels)

    def _present(self, lease: Lease, subject: str | None, channels: Sequence[str]) -> Lease:
        # Queued only: the keeper adds it to the channels' presence sets in its next round.
        if channels:
            idle = self.presence.flush_at is None
            lease.channels = channels
            lease.presence = self.presence.opened(subject, channels)
            if idle:
                self._wake.set()  # so that the keeper waits for the flush delay
        return lease

    def _rides(self, rider: Rider | None) -> Rider | None:
        # Under Cluster the admission's key and the rider's would be on other nodes (and the
        # Cluster client pipelines no script): the rider reads on its own.
        return None if self.presence.script.sharded else rider

    def _along(self, command: Callable[[redis.client.Pipeline], object], rider: Rider) -> object:
        """The reply to the admission's one ``command`` (an exception object if it alone
        failed), sent with ``rider``'s commands in one round trip. Raises what lost the round
        trip, after telling the rider."""
        pipe = self._client.pipeline(transaction=False)
        command(pipe)
        rider.queue(pipe)
        try:
            replies = pipe.execute(raise_on_error=False)
        except BaseException as error:
            rider.fail(error)
            raise
        rider.take(replies[1:])
        return replies[0]

    def _check_revoked(
        self, subject: str, issued_at: float, lease: Lease, rider: Rider | None = None
    ) -> None:
        """Without the subject limit: raise TokenRevoked if the subject's revocation covers a
        token signed at ``issued_at`` (one GET; not checked when Redis fails)."""
        key = keys.revoked_key(subject)
        rider = self._rides(rider)
        try:
            if rider is None:
                revoked_at = self._client.get(key)
            else:
                revoked_at = self._along(lambda pipe: pipe.get(key), rider)
                if isinstance(revoked_at, Exception):
                    raise revoked_at
        except (redis.RedisError, OSError) as error:
            log.warning("token revocation not checked, Redis failed: %s", error)
            return
        if revocations.is_revoked(revoked_at, issued_at):
            self._refuse(lease)
            raise _revoked()

    def _refuse(self, lease: Lease) -> None:
        """Undo the count of a stream refused at admission."""
        lease.released = True
        self._uncount()

    def _uncount(self) -> None:
        self.open -= 1
        if self.per_worker and self.open == self.per_worker - 1:
            self._on_room()

    def release(self, lease: Lease) -> None:
        """The stream of ``lease`` closed. Never blocks: the keeper removes it from Redis."""
        if lease.released:
            return
        lease.released = True
        self._uncount()
        if lease.presence:
            idle = self.presence.flush_at is None
            self.presence.closed(lease.presence, lease.channels)
            if idle:
                self._wake.set()
        if lease.key is not None:
            self._leases.discard(lease)
            self._released.append((lease.key, lease.member))
            self._wake.set()

    def keep(self) -> None:
        """Run forever (spawn it): release closed streams' leases as they close, renew the open
        ones every heartbeat period. Redis errors are logged and retried on the next round."""
        renew_at = time.monotonic() + self.period_seconds
        while True:
            wake_at = renew_at
            presence_at = self.presence.next_due()
            if presence_at is not None:
                wake_at = min(wake_at, presence_at)
            self._wake.wait(max(0.0, wake_at - time.monotonic()))
            self._wake.clear()
            try:
                self.flush(everything=False)
                if time.monotonic() >= renew_at:
                    renew_at = time.monotonic() + self.period_seconds
                    self.renew()
            except (redis.RedisError, OSError) as error:
                log.warning("stream leases not updated, Redis failed: %s", error)
                gevent.sleep(min(1.0, self.period_seconds))

    def flush(self, everything: bool = True) -> None:
        """Remove the released leases from Redis now, and send the presence changes queued
        (only those due, unless ``everything``: as a worker exits)."""
        reloaded = False
        while self._released or self.presence.pending(everything):
            batch, self._released = self._released, []
            pipe = self._client.pipeline(transaction=False)
            for key, member in batch:
                pipe.zrem(key, member)
            taken = self.presence.take_changes()
            script = self.presence.script
            if not script.sharded:
                script.queue(pipe, taken.items())
            try:
                if len(pipe):
                    pipe.execute()
                if script.sharded:
                    script.run_sharded(taken.items())
            except BaseException as error:
                self._released = batch + self._released
                self.presence.requeue(taken)
                if reloaded or not isinstance(error, redis.exceptions.NoScriptError):
                    raise
                reloaded = self._load_scripts()

    def renew(self) -> None:
        """Push every open lease's expiry ``lease_seconds`` past Redis's now."""
        leases = [lease for lease in self._leases if lease.key is not None]
        lease_ms = int(self.lease_seconds * 1000)
        script = self.presence.script
        if script.sharded:  # the Cluster client pipelines no script
            for start in range(0, len(leases), _RENEW_BATCH):
                batch = leases[start : start + _RENEW_BATCH]
                self._renew(
                    keys=[lease.key for lease in batch],
                    args=[lease_ms, *(lease.member for lease in batch)],
                )
            script.run_sharded(self.presence.renewals())
            return
        for attempt in range(2):
            pipe = self._client.pipeline(transaction=False)
            for start in range(0, len(leases), _RENEW_BATCH):
                batch = leases[start : start + _RENEW_BATCH]
                pipe.evalsha(
                    self._renew.sha, len(batch), *(lease.key for lease in batch),
                    lease_ms, *(lease.member for lease in batch),
                )
            script.queue(pipe, self.presence.renewals())
            if not len(pipe):
                return
            try:
                pipe.execute()
                return
            except redis.exceptions.NoScriptError:
                if attempt:
                    raise
                self._load_scripts()

    def _load_scripts(self) -> bool:
        # A Redis that never saw the scripts (restarted, failed over) answers NOSCRIPT: load
        # them and send again (every command of these pipelines may run twice harmlessly).
        self._client.script_load(_RENEW)
        self.presence.script.load()
        return True


def _nothing() -> None:
    pass


def _revoked() -> TokenRevoked:
    return TokenRevoked(
        "this token's subject was revoked after the token was issued: ask for a new token."
    )
