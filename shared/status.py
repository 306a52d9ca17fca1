"""Stream workers' status records in Redis, and the overview built from them: each stream worker
writes its own record (stream/status.py); the ops page's feed (web/ops.py) and
``eventgate status`` read them all. ``eventgate relay`` programs write theirs the same way into
a hash of their own (``keys.RELAYS``; ``outbox_overview``).

Every stream worker writes one small JSON record (open streams, channels, queue depths, lag,
counters) into the ``keys.WORKERS`` hash every few seconds. A record carries the time it was
written and how long it is good for; readers skip (and delete) records past that, so a worker
that died without a word (``kill -9``) vanishes within seconds. The hash itself also expires,
so when every worker is gone, so is the hash. Records and the overview hold numbers, ids and
channel names only, never a token, a key or a subject. Reading is read-only except for deleting
expired records.
"""

from __future__ import annotations

import json
import time

import redis
from redis.cluster import RedisCluster

from eventgate.shared import keys

#: A record is good for this many status intervals (a worker that misses one is not gone yet).
TTL_INTERVALS = 3

#: Summed over workers for the overview's totals.
SUMMED = (
    "streams", "channels", "queued_bytes", "queued_streams", "events", "delivered",
    "replayed", "lost", "slow_disconnects", "reconnects", "backfills", "written",
)


def write_record(
    client: redis.Redis, worker_id: str, record: dict, ttl_seconds: float,
    key: str = keys.WORKERS,
) -> None:
    """Store ``record`` for ``worker_id`` in the hash ``key`` (stream workers', or
    ``keys.RELAYS`` for outbox relays); adds ``updated_at`` and ``expires_at``."""
    now = time.time()
    body = {**record, "worker": worker_id, "updated_at": now, "expires_at": now + ttl_seconds}
    pipe = client.pipeline(transaction=False)
    pipe.hset(key, worker_id, json.dumps(body, separators=(",", ":")))
    pipe.expire(key, max(1, int(ttl_seconds) + 1))
    pipe.execute()


def remove_record(client: redis.Redis, worker_id: str, key: str = keys.WORKERS) -> None:
    """Delete the record of a worker that stops on purpose."""
    client.hdel(key, worker_id)


def read_records(client: redis.Redis, key: str = keys.WORKERS) -> list[dict]:
    """Every live record of the hash ``key``, sorted by worker id; expired ones are deleted."""
    now = time.time()
    live, stale = [], []
    for worker_id, raw in client.hgetall(key).items():
        try:
            record = json.loads(raw)
        except ValueError:
            stale.append(worker_id)
            continue
        if not isinstance(record, dict) or record.get("expires_at", 0) < now:
            stale.append(worker_id)
        else:
            live.append(record)
    if stale:
        client.hdel(key, *stale)
    return sorted(live, key=lambda record: str(record.get("worker")))


def overview(client: redis.Redis) -> dict:
    """The gateway at a glance — ``{"workers": [records], "totals": {...}, "redis": {...}}``:
    what ``eventgate status`` prints and the ops status event carries. Raises redis errors."""
    records = read_records(client)
    totals: dict[str, float] = {name: 0 for name in SUMMED}
    for record in records:
        for name in SUMMED:
            value = record.get(name)
            if isinstance(value, (int, float)):
                totals[name] += value
    lags = [r["lag_p99_seconds"] for r in records if isinstance(r.get("lag_p99_seconds"), float)]
    totals["workers"] = len(records)
    if any(r.get("lag_p99_seconds") == "+Inf" for r in records):
        totals["lag_p99_seconds"] = "+Inf"  # past the last bucket (stream/lag.py)
    else:
        totals["lag_p99_seconds"] = max(lags) if lags else None
    memory = redis_memory(client)
    return {
        "workers": records,
        "totals": totals,
        "redis": {
            "used_memory_bytes": memory.get("used_memory"),
            "used_memory_human": memory.get("used_memory_human"),
            "maxmemory_bytes": memory.get("maxmemory"),
        },
    }


def outbox_overview(client: redis.Redis) -> dict | None:
    """What the live ``eventgate relay`` programs last wrote (eventgate/relayprogram.py), or None
    when none runs: ``relays`` alive; ``rows`` waiting and the ``oldest_seconds`` row's age, as
    the latest record read them (every relay reads the same table); ``relayed`` and ``failed``
    summed over the relays (each counts since it started)."""
    records = read_records(client, keys.RELAYS)
    if not records:
        return None
    latest = max(records, key=lambda record: record.get("updated_at", 0))
    return {
        "relays": len(records),
        "rows": latest.get("rows"),
        "oldest_seconds": latest.get("oldest_seconds"),
        "relayed": sum(int(r.get("relayed") or 0) for r in records),
        "failed": sum(int(r.get("failed") or 0) for r in records),
        "last_error": latest.get("last_error"),
    }


def redis_memory(client: redis.Redis) -> dict:
    """``INFO memory``'s fields; under Redis Cluster (a client with no one pool) summed over the
    primaries, each holding its own share of the logs (redis-py would ask one node)."""
    if getattr(client, "connection_pool", None) is not None:
        return client.info("memory")
    per_node = client.info("memory", target_nodes=RedisCluster.PRIMARIES).values()
    used = sum(int(node.get("used_memory", 0)) for node in per_node)
    return {
        "used_memory": used,
        "used_memory_human": f"{used / 1048576:.2f}M",
        "maxmemory": sum(int(node.get("maxmemory", 0)) for node in per_node),
    }


def log_lengths(client: redis.Redis, limit: int = 1000) -> tuple[dict[str, int], bool]:
    """``({channel: events in its log}, complete)`` for up to ``limit`` channels, found with
    SCAN (never KEYS, which blocks Redis); ``complete`` is False when more exist."""
    names: list[str] = []
    complete = True
    for key in client.scan_iter(match=keys.LOG_PATTERN, count=1000, _type="stream"):
        text = key.decode("utf-8") if isinstance(key, bytes) else key
        name = keys.channel_of_log(text)
        if name is None or keys.log_key(name) != text:
            continue  # a log of eventgate 0.2's key form: `eventgate migrate` moves it
        if len(names) >= limit:
            complete = False
            break
        names.append(name)
    pipe = client.pipeline(transaction=False)
    for name in names:
        pipe.xlen(keys.log_key(name))
    return dict(zip(names, pipe.execute(), strict=True)), complete
