"""Publisher: store each event in its channel's log and publish it live, in one atomic round trip.

The Lua script appends to the channel's Redis Stream (trimmed by count and age), records the id
of the previous event (``prev``, so readers can prove continuity), then PUBLISHes the payload with
the new id. Either Redis confirms and returns ids, or ``publish`` raises PublishError: nothing
ever reports success for an event that was not stored. The converse does not hold: when Redis
stops between running the script and replying, the event is stored yet the publish fails, so a
caller that simply retries may publish it twice — unless it passes an idempotency key: the
script keeps, beside the events and in the same atomic run, a record of the key, the request's
fingerprint and the ids, so a repeat answers those ids and stores nothing again.

With ``durable_replicas`` set, a publish is confirmed only once that many replicas hold it
(``WAIT`` on the script's own connection); otherwise it raises NotDurable.

Under Redis Cluster a script may only touch keys of one hash slot, and a channel's keys carry
its partition's hash tag (shared/keys.py). So a batch is split by partition — the events of a
part keep their relative order — and each part is one script run, atomic and live over
sharded pub/sub (``SPUBLISH``), on the primary owning its slot; the parts of one node go in one
pipeline (shared/slotscripts.py). The ids come back in the request's order. A batch is then no
longer all-or-nothing: a failure may leave some parts stored, which is what an idempotency key
is for. The key covers the whole batch this way:

1. The batch record ``keys.idempotency_key(key)``, in a slot of its own, is written first with
   ``SET … NX GET EX`` and holds the batch's fingerprint. If it held another fingerprint, the
   publish is refused (IdempotencyKeyReused) before any part runs: nothing is stored.
2. Each part's script keeps a part record ``keys.partition_idempotency_key(key, partition)``
   in the part's slot — the fingerprint and that part's ids — exactly as the one-Redis script
   does, in the same atomic run as its events: a part that has a record was stored, and a part
   without one was not.
3. A repeat (the batch record held this fingerprint) therefore replays the parts stored before
   a crash and stores the rest; ``Stored.replayed`` is True only when every part replayed.
   A batch record that this publish created ("fresh") treats a part record of another
   fingerprint as a leftover of an expired batch and replaces it; a repeat refuses it. Two
   concurrent publishes of one batch under one key store each part once: a part's record is
   read and written within the part's own atomic run.

Part records are written after the batch record and with the same lifetime, so they outlive it:
while the batch record lives, so does every part record written under it. One difference from
one Redis: a publish that failed before storing anything still leaves its batch record, so the
key then only accepts the same events again (until it expires).

A job worker needs two lines: ``Publisher.from_url("redis://…").publish("orders.42", {...})``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import redis
from redis.cluster import RedisCluster
from redis.exceptions import RedisClusterException

from eventgate.shared import keys
from eventgate.shared.config import Config
from eventgate.shared.errors import (
    IdempotencyKeyReused,
    InvalidEvent,
    NotDurable,
    PublishError,
    RedisFull,
)
from eventgate.shared.events import encode_data
from eventgate.shared.names import (
    validate_channel,
    validate_event_type,
    validate_idempotency_key,
)
from eventgate.shared.redisconn import LazyCluster, ThreadClients, connect
from eventgate.shared.slotscripts import SlotCall, run_per_slot

# KEYS: log1, live1, log2, live2, …[, record]
# ARGV: maxlen, max_age_ms, type1, data1, type2, data2, …[, fingerprint, record_seconds[, fresh]]
# With an idempotency record (an odd number of KEYS) the reply starts with the outcome: 'stored'
# (then the new ids), 'replayed' (the ids the record holds; nothing added) or 'reused' (the record
# holds another fingerprint; nothing added) — except with 'fresh' (a part of a Cluster batch
# whose batch record this very publish created: a record of another fingerprint is a leftover of
# an expired batch, and is replaced). The record, ``fingerprint\nid1,id2,…``, is written
# after the adds, so that it exists only for events that were stored. A replay writes it again
# (same value, same expiry) so that a WAIT that follows counts the replicas holding it — and,
# the replication stream being ordered, the events it names.
# A log's newest id is looked up once per batch (XREVRANGE, or the last generated id when the
# log exists but is empty); later events of the batch on that log chain to the id just added,
# which is what the lookup would find again. Trimming by age happens once per log, after its
# adds: the cut-off is one TIME for the whole batch, so the result is the same as trimming after
# every add. With an age limit the log also expires, between that age and 1.1 times it after its
# newest event: a channel that falls silent leaves nothing in Redis (its next event starts a new
# log, prev 0-0). The expiry is pushed back only once it comes closer than the age limit (PTTL,
# a read, costs a third of a PEXPIRE, which is also written to replicas and the AOF).
# The parts both scripts share: the age cut-off (one TIME per run), ``append`` (one event added
# to its log, chained to the log's newest id, and published live) and ``trim`` (each log touched,
# trimmed by age and its expiry pushed back).
APPEND_LUA = """
local maxlen, max_age_ms = ARGV[1], tonumber(ARGV[2])
local minid = nil
if max_age_ms > 0 then
  local t = redis.call('TIME')
  minid = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) - max_age_ms
end
local newest = {}
local logs = {}
local function append(log, live, etype, data)
  local prev = newest[log]
  if not prev then
    prev = '0-0'
    local last = redis.call('XREVRANGE', log, '+', '-', 'COUNT', 1)
    if #last > 0 then
      prev = last[1][1]
    elseif redis.call('EXISTS', log) == 1 then
      local info = redis.call('XINFO', 'STREAM', log)
      for j = 1, #info, 2 do
        if info[j] == 'last-generated-id' then prev = info[j + 1] end
      end
    end
    logs[#logs + 1] = log
  end
  local id = redis.call('XADD', log, 'MAXLEN', '~', maxlen, '*',
                        'type', etype, 'data', data, 'prev', prev)
  newest[log] = id
  redis.call('PUBLISH', live, id .. '\\n' .. prev .. '\\n' .. etype .. '\\n' .. data)
  return id
end
local function trim()
  if not minid then return end
  for _, log in ipairs(logs) do
    redis.call('XTRIM', log, 'MINID', minid)
    if redis.call('PTTL', log) < max_age_ms then
      redis.call('PEXPIRE', log, max_age_ms + math.floor(max_age_ms / 10))
    end
  end
end
"""
_SCRIPT = APPEND_LUA + """
local nkeys = #KEYS
local record = nil
if nkeys % 2 == 1 then
  nkeys = nkeys - 1
  record = KEYS[nkeys + 1]
  local stored = redis.call('GET', record)
  if stored then
    local cut = string.find(stored, '\\n', 1, true)
    if string.sub(stored, 1, cut - 1) ~= ARGV[nkeys + 3] then
      if ARGV[nkeys + 5] ~= 'fresh' then return {'reused'} end
    else
      redis.call('SET', record, stored, 'KEEPTTL')
      local ids = {'replayed'}
      for id in string.gmatch(string.sub(stored, cut + 1), '[^,]+') do ids[#ids + 1] = id end
      return ids
    end
  end
end
local ids = {}
for i = 1, nkeys, 2 do
  ids[#ids + 1] = append(KEYS[i], KEYS[i + 1], ARGV[i + 2], ARGV[i + 3])
end
trim()
if record then
  redis.call('SET', record, ARGV[nkeys + 3] .. '\\n' .. table.concat(ids, ','),
             'EX', ARGV[nkeys + 4])
  table.insert(ids, 1, 'stored')
end
return ids
"""
# The outbox's rows (shared/relay.py): every event with its own idempotency record, so that one
# run stores a batch of rows atomically while each row stays exactly-once on its own.
# KEYS: log1, live1, record1, log2, live2, record2, …
# ARGV: maxlen, max_age_ms, record_seconds, type1, data1, fingerprint1, type2, …
# Every record is checked before anything is added: one of another fingerprint answers
# {'reused', n} (row n, nothing added). A row whose record exists answers the id it holds (it
# was stored by an earlier run); the others are added, in order, and recorded.
_ROWS_SCRIPT = APPEND_LUA + """
local held = {}
for i = 1, #KEYS, 3 do
  local stored = redis.call('GET', KEYS[i + 2])
  if stored then
    local cut = string.find(stored, '\\n', 1, true)
    if string.sub(stored, 1, cut - 1) ~= ARGV[i + 5] then return {'reused', (i + 2) / 3} end
    held[i] = string.sub(stored, cut + 1)
  end
end
local ids = {}
for i = 1, #KEYS, 3 do
  local id = held[i]
  if id then
    redis.call('SET', KEYS[i + 2], ARGV[i + 5] .. '\\n' .. id, 'KEEPTTL')
  else
    id = append(KEYS[i], KEYS[i + 1], ARGV[i + 3], ARGV[i + 4])
    redis.call('SET', KEYS[i + 2], ARGV[i + 5] .. '\\n' .. id, 'EX', ARGV[3])
  end
  ids[#ids + 1] = id
end
trim()
return ids
"""
#: Under Redis Cluster: the same script, the live copy over sharded pub/sub (the channel, in
#: KEYS, is in the log's slot), never over the cluster-wide bus that every node would relay.
_SHARDED_SCRIPT = _SCRIPT.replace("redis.call('PUBLISH'", "redis.call('SPUBLISH'")
_SHARDED_SHA = hashlib.sha1(_SHARDED_SCRIPT.encode()).hexdigest()
_ROWS_SHA = hashlib.sha1(_ROWS_SCRIPT.encode()).hexdigest()
_SHARDED_ROWS_SCRIPT = _ROWS_SCRIPT.replace("redis.call('PUBLISH'", "redis.call('SPUBLISH'")
_SHARDED_ROWS_SHA = hashlib.sha1(_SHARDED_ROWS_SCRIPT.encode()).hexdigest()
#: The script's answer to other events under a used key (bytes, or text from a client that
#: decodes responses).
_REUSED = (b"reused", "reused")
_REPLAYED = (b"replayed", "replayed")


@dataclass(frozen=True)
class PublishSettings:
    """What publishing reads of a Config: the fields of the same names, with Config's defaults.

    Config insists on the secret keys and publisher keys that the apps need; a job worker that
    only publishes holds neither, so ``Publisher.from_url`` builds one of these instead.
    """

    redis_url: str = field(repr=False)  # it may hold a password
    redis_pool_size: int = Config.redis_pool_size
    redis_timeout_seconds: float = Config.redis_timeout_seconds
    redis_connect_timeout_seconds: float = Config.redis_connect_timeout_seconds
    retention_count: int = Config.retention_count
    retention_seconds: int = Config.retention_seconds
    max_event_bytes: int = Config.max_event_bytes
    max_batch_events: int = Config.max_batch_events
    idempotency_seconds: int = Config.idempotency_seconds
    durable_replicas: int = Config.durable_replicas


@dataclass(frozen=True)
class Stored:
    """What a publish returned: the events' ids, and whether they were stored by this call
    (False) or answered from the idempotency record of an earlier one (True: nothing added)."""

    ids: list[str]
    replayed: bool


@dataclass(frozen=True)
class Draft:
    """An event about to be published: validated channel and type, data already JSON text."""

    channel: str
    type: str
    data: str


class Publisher:
    """Publishes events; safe to share within a process. Each thread that publishes keeps one of
    the client's pooled connections while it lives (at most half the pool; see ThreadClients)."""

    def __init__(self, client: redis.Redis, config: Config | PublishSettings) -> None:
        self._client = client
        self._clients = ThreadClients(client)
        self._config = config
        # A cluster client connects when asked for anything (register_script would ask it for
        # its encoder): its script and SHA are the module's, and nothing connects yet.
        self._sharded = isinstance(client, (LazyCluster, RedisCluster))
        self._script = None if self._sharded else client.register_script(_SCRIPT)

    @classmethod
    def from_url(cls, redis_url: str, **settings: object) -> Publisher:
        """A publisher to the Redis at ``redis_url``, with Config's defaults for the rest
        (``retention_count=…``, ``max_event_bytes=…``, any field of PublishSettings, overrides
        them). Reads no environment and needs no secret. Connects on the first publish."""
        return cls.from_config(PublishSettings(redis_url, **settings))  # type: ignore[arg-type]

    @classmethod
    def from_config(cls, config: Config | PublishSettings) -> Publisher:
        """A publisher with ``config``'s Redis and limits, e.g. ``from_config(Config.from_env())``
        in a process that has the apps' settings."""
        return cls(connect(config), config)

    @property
    def client(self) -> redis.Redis:
        """The Redis client events are published through."""
        return self._client

    @property
    def max_batch_events(self) -> int:
        """The most events one publish may carry."""
        return self._config.max_batch_events

    def draft(self, channel: object, data: object = None, event_type: object = "message") -> Draft:
        """Validate one event; raises InvalidName or InvalidEvent (both ValueError → 400)."""
        return Draft(
            channel=validate_channel(channel),
            type=validate_event_type(event_type),
            data=encode_data(data, self._config.max_event_bytes),
        )

    def publish(
        self,
        channel: str,
        data: object = None,
        event_type: str = "message",
        *,
        idempotency_key: str | None = None,
    ) -> str:
        """Store and publish one event; returns its id. Raises PublishError if Redis did not
        confirm, InvalidName/InvalidEvent for bad input; ``idempotency_key`` as ``publish_many``."""
        draft = self.draft(channel, data, event_type)
        return self.publish_many([draft], idempotency_key=idempotency_key)[0]

    def publish_many(
        self,
        drafts: Sequence[Draft] | Iterable[Draft],
        *,
        idempotency_key: str | None = None,
    ) -> list[str]:
        """Store and publish a batch atomically and in order (one script run; under Redis
        Cluster one per partition of the batch, each atomic); returns the ids in the batch's
        order. Raises as ``store``."""
        return self.store(drafts, idempotency_key=idempotency_key).ids

    def store(
        self,
        drafts: Sequence[Draft] | Iterable[Draft],
        *,
        idempotency_key: str | None = None,
    ) -> Stored:
        """``publish_many``, also saying whether the events were stored now or the ids come
        from an earlier publish under the same idempotency key (metrics count the two apart).

        With ``idempotency_key`` (1–128 characters of A-Z a-z 0-9 . _ : -, else InvalidRequest):
        a repeat of the same events under the same key within ``idempotency_seconds`` returns
        the first publish's ids and stores nothing; other events under a key already used raise
        IdempotencyKeyReused. With ``durable_replicas`` > 0, raises NotDurable (a PublishError)
        when fewer replicas than that confirmed holding the events in time.
        """
        drafts = list(drafts)
        if not drafts:
            return Stored([], replayed=False)
        if len(drafts) > self._config.max_batch_events:
            raise InvalidEvent(
                f"a batch holds at most {self._config.max_batch_events} events."
            )
        key = None if idempotency_key is None else validate_idempotency_key(idempotency_key)
        try:
            if self._sharded:
                ids, replayed, replicas = self._store_sharded(drafts, key)
            else:
                ids, replayed, replicas = self._store_one(drafts, key)
        except redis.exceptions.OutOfMemoryError as error:
            raise RedisFull(
                "Redis is full (it refuses writes beyond its maxmemory); nothing was "
                "published. Retry once old events have expired, or give Redis more memory."
            ) from error
        except (redis.RedisError, RedisClusterException) as error:
            if self._sharded and len({keys.partition(d.channel) for d in drafts}) > 1:
                raise PublishError(
                    f"the Redis Cluster did not confirm the batch ({type(error).__name__}): "
                    "some of its parts may be stored. Repeat it with the same idempotency key "
                    "to publish each event exactly once."
                ) from error
            raise PublishError(
                f"Redis did not store the event ({type(error).__name__}); nothing was published."
            ) from error
        durable = self._config.durable_replicas
        if replicas < durable:
            raise NotDurable(
                f"Redis stored the event but {replicas} of the {durable} replicas required "
                f"confirmed holding it within {wait_ms(self._config)} ms: it may or may not "
                "survive a failover; retry with the same idempotency key."
            )
        return Stored(
            [i.decode("ascii") if isinstance(i, bytes) else str(i) for i in ids], replayed
        )

    def store_rows(self, rows: Sequence[tuple[Draft, str]]) -> list[str]:
        """Store and publish outbox rows, each ``(draft, idempotency key)`` exactly once: a row
        whose key was stored before answers that earlier id and adds nothing. Returns the ids in
        the rows' order. One script run holds the rows of a partition, atomically (one run in
        all on one Redis), so a channel's rows are stored all or none, in order.

        Raises as ``store``; under Redis Cluster a failure may leave other partitions' rows
        stored, which a repeat answers from their records.
        """
        if not rows:
            return []
        if len(rows) > self._config.max_batch_events:
            raise InvalidEvent(f"a batch holds at most {self._config.max_batch_events} events.")
        try:
            if self._sharded:
                ids, replicas = self._store_rows_sharded(rows)
            else:
                ids, replicas = self._store_rows_one(rows)
        except redis.exceptions.OutOfMemoryError as error:
            raise RedisFull(
                "Redis is full (it refuses writes beyond its maxmemory); the rows wait."
            ) from error
        except (redis.RedisError, RedisClusterException) as error:
            raise PublishError(
                f"Redis did not store the rows ({type(error).__name__}); they wait."
            ) from error
        durable = self._config.durable_replicas
        if replicas < durable:
            raise NotDurable(
                f"Redis stored the rows but {replicas} of the {durable} replicas required "
                f"confirmed holding them within {wait_ms(self._config)} ms; they wait."
            )
        return [i.decode("ascii") if isinstance(i, bytes) else str(i) for i in ids]

    def _rows_call(
        self, rows: Sequence[tuple[Draft, str]], record_key: Callable[[str, str], str]
    ) -> tuple[list[str], list[str | int]]:
        script_keys: list[str] = []
        args: list[str | int] = [
            self._config.retention_count,
            self._config.retention_seconds * 1000,
            self._config.idempotency_seconds,
        ]
        for draft, key in rows:
            key = validate_idempotency_key(key)
            script_keys += [
                keys.log_key(draft.channel),
                keys.live_channel(draft.channel),
                record_key(key, draft.channel),
            ]
            args += [draft.type, draft.data, fingerprint([draft])]
        return script_keys, args

    def _store_rows_one(self, rows: Sequence[tuple[Draft, str]]) -> tuple[list, int]:
        script_keys, args = self._rows_call(rows, lambda key, _: keys.idempotency_key(key))
        command = ("EVALSHA", _ROWS_SHA, len(script_keys), *script_keys, *args)
        durable = bool(self._config.durable_replicas)
        replies = self._rows_pipelined(command, durable)
        if isinstance(replies[0], redis.exceptions.NoScriptError):
            self._client.script_load(_ROWS_SCRIPT)
            replies = self._rows_pipelined(command, durable)
        for answer in replies:
            if isinstance(answer, Exception):
                raise answer
        return _row_ids(replies[0], rows), int(replies[1]) if durable else 0

    def _rows_pipelined(self, command: tuple, durable: bool) -> list:
        pipe = self._clients.client().pipeline(transaction=False)
        pipe.execute_command(*command)
        if durable:
            pipe.execute_command("WAIT", self._config.durable_replicas, wait_ms(self._config))
        return pipe.execute(raise_on_error=False)

    def _store_rows_sharded(self, rows: Sequence[tuple[Draft, str]]) -> tuple[list, int]:
        client = self._client
        cluster = client.cluster() if isinstance(client, LazyCluster) else client
        parts: dict[int, list[int]] = {}
        for position, (draft, _) in enumerate(rows):
            parts.setdefault(keys.partition(draft.channel), []).append(position)
        calls = []
        for positions in parts.values():
            part_keys, args = self._rows_call(
                [rows[p] for p in positions],
                lambda key, channel: keys.partition_idempotency_key(
                    key, keys.partition(channel)),
            )
            calls.append(SlotCall(part_keys, args))
        durable = self._config.durable_replicas
        wait = (durable, wait_ms(self._config)) if durable else None
        replies, replicas = run_per_slot(
            cluster, _SHARDED_ROWS_SCRIPT, _SHARDED_ROWS_SHA, calls, wait
        )
        ids: list = [None] * len(rows)
        for positions, reply in zip(parts.values(), replies, strict=True):
            for position, event_id in zip(
                positions, _row_ids(reply, [rows[p] for p in positions]), strict=True
            ):
                ids[position] = event_id
        return ids, replicas

    def _store_one(self, drafts: list[Draft], key: str | None) -> tuple[list, bool, int]:
        """One Redis (plain or Sentinel): the whole batch in one script run, record included."""
        script_keys: list[str] = []
        args: list[str | int] = [
            self._config.retention_count,
            self._config.retention_seconds * 1000,
        ]
        for draft in drafts:
            script_keys += [keys.log_key(draft.channel), keys.live_channel(draft.channel)]
            args += [draft.type, draft.data]
        if key is not None:
            script_keys.append(keys.idempotency_key(key))
            args += [fingerprint(drafts), self._config.idempotency_seconds]
        if self._config.durable_replicas:
            reply, replicas = self._run_and_wait(script_keys, args)
        else:
            reply = self._script(keys=script_keys, args=args, client=self._clients.client())
            replicas = 0
        ids, replayed = _outcome(reply, len(drafts), key)
        return ids, replayed, replicas

    def _store_sharded(self, drafts: list[Draft], key: str | None) -> tuple[list, bool, int]:
        """Redis Cluster: one script run per partition of the batch (the module's docstring
        tells how an idempotency key covers them all)."""
        client = self._client
        cluster = client.cluster() if isinstance(client, LazyCluster) else client
        parts: dict[int, list[int]] = {}
        for position, draft in enumerate(drafts):
            parts.setdefault(keys.partition(draft.channel), []).append(position)
        record_args: list[str | int] = []
        if key is not None:
            mark = fingerprint(drafts)
            ttl = self._config.idempotency_seconds
            held = cluster.set(keys.idempotency_key(key), mark, nx=True, ex=ttl, get=True)
            if held is not None and held not in (mark, mark.encode()):
                raise _reused(key)
            record_args = [mark, ttl, "fresh" if held is None else "repeat"]
        calls = []
        for partition, positions in parts.items():
            part_keys: list[str] = []
            args: list[str | int] = [
                self._config.retention_count,
                self._config.retention_seconds * 1000,
            ]
            for position in positions:
                channel = drafts[position].channel
                part_keys += [keys.log_key(channel), keys.live_channel(channel)]
                args += [drafts[position].type, drafts[position].data]
            if key is not None:
                part_keys.append(keys.partition_idempotency_key(key, partition))
            calls.append(SlotCall(part_keys, args + record_args))
        durable = self._config.durable_replicas
        wait = (durable, wait_ms(self._config)) if durable else None
        replies, replicas = run_per_slot(
            cluster, _SHARDED_SCRIPT, _SHARDED_SHA, calls, wait
        )
        ids: list = [None] * len(drafts)
        replayed = True
        for positions, reply in zip(parts.values(), replies, strict=True):
            part_ids, part_replayed = _outcome(reply, len(positions), key)
            replayed = replayed and part_replayed
            for position, event_id in zip(positions, part_ids, strict=True):
                ids[position] = event_id
        return ids, replayed, replicas

    def _run_and_wait(self, script_keys: list[str], args: list[str | int]) -> tuple[object, int]:
        """The script, then ``WAIT``, pipelined on one connection (WAIT counts the replicas
        holding what its own connection wrote); the script's reply and the replica count.
        Loads the script when Redis lacks it (a restarted or newly promoted primary)."""
        command = ("EVALSHA", self._script.sha, len(script_keys), *script_keys, *args)
        reply, replicas = self._pipelined(command)
        if isinstance(reply, redis.exceptions.NoScriptError):
            self._client.script_load(_SCRIPT)
            reply, replicas = self._pipelined(command)
        for answer in (reply, replicas):
            if isinstance(answer, Exception):
                raise answer
        return reply, int(replicas)

    def _pipelined(self, command: tuple) -> list:
        pipe = self._client.pipeline(transaction=False)
        pipe.execute_command(*command)
        pipe.execute_command("WAIT", self._config.durable_replicas, wait_ms(self._config))
        return pipe.execute(raise_on_error=False)


def _outcome(reply: object, events: int, key: str | None) -> tuple[list, bool]:
    """A script's ids and whether they were replayed; raises IdempotencyKeyReused for a key
    used for other events, PublishError for a reply that is not ``events`` ids."""
    replayed = False
    if key is not None and isinstance(reply, list) and reply:
        if reply[0] in _REUSED:
            raise _reused(key)
        replayed = reply[0] in _REPLAYED
        reply = reply[1:]
    if not isinstance(reply, list) or len(reply) != events:
        raise PublishError("Redis answered the publish script with something unexpected.")
    return reply, replayed


def _row_ids(reply: object, rows: Sequence[tuple[Draft, str]]) -> list:
    """The rows script's ids; raises IdempotencyKeyReused for a row whose key holds other
    events, PublishError for any other unexpected answer."""
    if isinstance(reply, list) and len(reply) == 2 and reply[0] in _REUSED:
        raise _reused(rows[int(reply[1]) - 1][1])
    if not isinstance(reply, list) or len(reply) != len(rows):
        raise PublishError("Redis answered the outbox script with something unexpected.")
    return reply


def _reused(key: str) -> IdempotencyKeyReused:
    return IdempotencyKeyReused(
        f"idempotency key {key!r} was already used for other events: "
        "repeat a publish with exactly the same events, or use a new key."
    )


def wait_ms(config: Config | PublishSettings) -> int:
    """How long a durable publish waits for its replicas: half the Redis command timeout, so
    that WAIT answers well before the connection's own read timeout would give up on it."""
    return max(1, int(config.redis_timeout_seconds * 500))


def fingerprint(drafts: Sequence[Draft]) -> str:
    """What makes a repeat "the same request": every event's channel, type and data, in order
    (hashed, so that a record stays small whatever the batch). Names hold no newline and JSON
    text escapes it, so newline-separated fields cannot run into each other."""
    digest = hashlib.sha256()
    for draft in drafts:
        digest.update(f"{draft.channel}\n{draft.type}\n{draft.data}\n".encode())
    return digest.hexdigest()
