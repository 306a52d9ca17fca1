"""Presence: who holds a stream on a channel, as leases in Redis, and the joins and leaves written
into the channels that announce them.

Each open stream holds, on each of its channels, a member ``<subject or empty>|<opened ms>.<id>``
of the channel's sorted set (``keys.presence_key``) scored with its expiry in Redis server time.
The stream workers add and renew those members from their lease keeper (stream/limits.py), in
the round trips that already renew the per-subject leases, and remove them as streams close, so
a worker killed with SIGKILL stops counting once its leases lapse: within ``lease_seconds`` plus
one renewal period. Expired members are pruned by every touch of the channel's presence (another
worker's renewal, an open, a close, a read of the API).

On channels matching ``EVENTGATE_PRESENCE_CHANNELS`` the same script also keeps a count of live
streams per subject and decides, atomically in the channel's slot, when a subject came (its first
live stream: ``eventgate.join``) and when it left (its last stream gone, then no new one for
``presence_grace_seconds``: ``eventgate.leave``). The events are appended to the channel's log by
the publish script's own code (ids, ``prev`` chain, resume, history), so two workers racing
cannot both announce a subject. A leave is written by the first touch after its grace period;
the closing worker schedules one, and after a kill -9 any later touch of the channel does it.
Anonymous streams count in ``streams`` and announce nothing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import redis
from redis.cluster import RedisCluster

from eventgate.shared import keys
from eventgate.shared.config import Config
from eventgate.shared.names import grant_covers
from eventgate.shared.publisher import APPEND_LUA
from eventgate.shared.redisconn import LazyCluster
from eventgate.shared.slotscripts import SlotCall, run_per_slot

#: Op entries (two per lease) one script run carries at most, so that no run holds Redis long.
_RUN_ENTRIES = 2000
#: A lease outlives this many missed renewals (one per heartbeat period) before it lapses.
LEASE_PERIODS = 3
#: How long an announcing channel's presence keys outlive their last touch: the counts and the
#: pending leaves must not vanish while a dead worker's members wait to be pruned.
ANNOUNCED_IDLE_MS = 86_400_000

# KEYS: per channel, five: presence set, subject counts, pending leaves, log, live (all of one
# partition's slot).
# ARGV: maxlen, max_age_ms (the append code's), lease ms, grace ms; then per channel, in KEYS'
# order: channel, announce ('1'/'0'), the number n of op entries, and n entries — op, member
# pairs: '+' adds or renews a lease, '-' removes it. Returns the leaves written.
_BODY = """
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local lease, grace = tonumber(ARGV[3]), tonumber(ARGV[4])
local left = 0
local function subject_of(member)
  return string.match(member, '^(.*)|[^|]*$') or ''
end
local function touch(k, a)
  local zset, subjects, leaving = KEYS[k], KEYS[k + 1], KEYS[k + 2]
  local channel, announce = ARGV[a], ARGV[a + 1] == '1'
  local last = a + 2 + tonumber(ARGV[a + 2])
  local function event(etype, subject)
    append(KEYS[k + 3], KEYS[k + 4], etype, cjson.encode({channel = channel, subject = subject}))
  end
  local function came(member)
    local subject = subject_of(member)
    if subject == '' then return end
    if redis.call('HINCRBY', subjects, subject, 1) == 1 then
      if redis.call('ZREM', leaving, subject) == 0 then event('eventgate.join', subject) end
    end
  end
  local function went(member)
    local subject = subject_of(member)
    if subject == '' then return end
    if redis.call('HINCRBY', subjects, subject, -1) <= 0 then
      redis.call('HDEL', subjects, subject)
      redis.call('ZADD', leaving, now + grace, subject)
    end
  end
  if announce then
    for _, member in ipairs(redis.call('ZRANGEBYSCORE', zset, '-inf', now)) do
      redis.call('ZREM', zset, member)
      went(member)
    end
  else
    redis.call('ZREMRANGEBYSCORE', zset, '-inf', now)
  end
  for i = a + 3, last, 2 do
    local member = ARGV[i + 1]
    if ARGV[i] == '+' then
      if redis.call('ZADD', zset, now + lease, member) == 1 and announce then came(member) end
    elseif redis.call('ZREM', zset, member) == 1 and announce then
      went(member)
    end
  end
  if announce then
    for _, subject in ipairs(redis.call('ZRANGEBYSCORE', leaving, '-inf', now)) do
      redis.call('ZREM', leaving, subject)
      event('eventgate.leave', subject)
      left = left + 1
    end
    for i = 0, 2 do redis.call('PEXPIRE', KEYS[k + i], IDLE_MS) end
  else
    redis.call('PEXPIRE', zset, 2 * lease)
  end
  return last + 1
end
local a = 5
for k = 1, #KEYS, 5 do a = touch(k, a) end
trim()
return left
"""


SCRIPT = APPEND_LUA + _BODY.replace("IDLE_MS", str(ANNOUNCED_IDLE_MS))
#: Under Redis Cluster: joins and leaves go live over sharded pub/sub, as published events do.
SHARDED_SCRIPT = SCRIPT.replace("redis.call('PUBLISH'", "redis.call('SPUBLISH'")


def lease_seconds(config: Config) -> float:
    """How long a stream's leases (per subject, presence) outlive their last renewal."""
    return LEASE_PERIODS * config.heartbeat_seconds


def channel_keys(channel: str) -> list[str]:
    """The script's KEYS for ``channel``: all of its partition's slot."""
    return [
        keys.presence_key(channel),
        keys.presence_subjects_key(channel),
        keys.presence_leaving_key(channel),
        keys.log_key(channel),
        keys.live_channel(channel),
    ]


def announces(patterns: Sequence[str], channel: str) -> bool:
    """Whether ``channel`` carries joins and leaves (it matches one of ``patterns``)."""
    return any(grant_covers(pattern, channel) for pattern in patterns)


@dataclass(frozen=True)
class Holder:
    """One subject's streams on a channel, and since when (epoch ms) it has held one."""

    subject: str
    streams: int
    since_ms: int


@dataclass(frozen=True)
class ChannelPresence:
    """Who holds a stream on a channel: every live stream counted, the named ones by subject
    (oldest first)."""

    channel: str
    streams: int
    holders: list[Holder]


#: Script runs for channels: (channel, ops), ops as ``queue`` takes them.
Calls = Iterable[tuple[str, Sequence[str]]]


class PresenceScript:
    """The presence script of one process's Redis client, with the settings its calls share.

    On one Redis (or Sentinel) the runs go into the caller's pipelines (``queue``); under Redis
    Cluster, whose client pipelines no script, ``run_sharded`` sends them one pipeline per node
    (shared/slotscripts.py), each run on the primary owning its channel's slot."""

    def __init__(self, client: redis.Redis, config: Config) -> None:
        self.client = client
        self.patterns = config.presence_channels
        self.sharded = isinstance(client, (LazyCluster, RedisCluster))
        self.text = SHARDED_SCRIPT if self.sharded else SCRIPT
        self.sha = hashlib.sha1(self.text.encode()).hexdigest()
        self._args = [
            config.retention_count,
            config.retention_seconds * 1000,
            int(lease_seconds(config) * 1000),
            int(config.presence_grace_seconds * 1000),
        ]

    def load(self) -> None:
        """Make Redis know the script (again: a restarted Redis forgets it)."""
        self.client.script_load(self.text)

    def _parts(self, calls: Calls) -> list[tuple[list[str], list[str | int]]]:
        """``calls`` as script runs: one per partition (the channels of a run share a slot),
        each of at most ``_RUN_ENTRIES`` op entries, more when one channel alone has more."""
        runs: dict[int, tuple[list[str], list[str | int]]] = {}
        done = []
        for channel, ops in calls:
            part = keys.partition(channel)
            run = runs.get(part)
            if run is None or len(run[1]) + len(ops) > _RUN_ENTRIES:
                if run is not None:
                    done.append(run)
                run = runs[part] = ([], list(self._args))
            flag = "1" if self.patterns and announces(self.patterns, channel) else "0"
            run[0].extend(channel_keys(channel))
            run[1].extend((channel, flag, len(ops), *ops))
        return done + list(runs.values())

    def queue(self, pipe: object, calls: Calls) -> None:
        """Add to ``pipe`` (one Redis) the runs of ``calls``: per channel, prune its expired
        leases, apply its ops (``'+'`` or ``'-'``, member, …), write the joins and leaves due."""
        for run_keys, args in self._parts(calls):
            pipe.evalsha(self.sha, len(run_keys), *run_keys, *args)

    def run_sharded(self, calls: Calls) -> None:
        """Under Redis Cluster: the runs of ``calls``, one pipeline per node."""
        slot_calls = [SlotCall(run_keys, args) for run_keys, args in self._parts(calls)]
        if slot_calls:
            client = self.client
            cluster = client.cluster() if isinstance(client, LazyCluster) else client
            run_per_slot(cluster, self.text, self.sha, slot_calls)

    def read(self, channel: str) -> ChannelPresence:
        """``channel``'s presence now (expired leases pruned first, due leaves written)."""
        if self.sharded:
            self.run_sharded([(channel, ())])
            return summarize(channel, self.client.zrange(keys.presence_key(channel), 0, -1))
        for attempt in range(2):
            pipe = self.client.pipeline(transaction=False)
            self.queue(pipe, [(channel, ())])
            pipe.zrange(keys.presence_key(channel), 0, -1)
            try:
                members = pipe.execute()[1]
                break
            except redis.exceptions.NoScriptError:
                if attempt:
                    raise
                self.load()
        return summarize(channel, members)


def summarize(channel: str, members: Sequence[bytes | str]) -> ChannelPresence:
    """Group lease members (``subject|opened ms.id``) by subject."""
    held: dict[str, list[int]] = {}
    for raw in members:
        member = raw.decode("utf-8", "surrogatepass") if isinstance(raw, bytes) else raw
        subject, _, rest = member.rpartition("|")
        if subject:
            opened = rest.partition(".")[0]
            entry = held.setdefault(subject, [0, 2**62])
            entry[0] += 1
            entry[1] = min(entry[1], int(opened) if opened.isdigit() else 0)
    holders = sorted(
        (Holder(subject, count, since) for subject, (count, since) in held.items()),
        key=lambda holder: (holder.since_ms, holder.subject),
    )
    return ChannelPresence(channel, len(members), holders)

