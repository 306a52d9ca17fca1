"""Stream workers' status records in Redis: each worker writes its own, ops tools read them all.

Every stream worker writes one small JSON record (open streams, channels, queue depths, lag,
counters) into the ``keys.WORKERS`` hash every few seconds. A record carries the time it was
written and how long it is good for; readers skip (and delete) records past that, so a worker
that died without a word (``kill -9``) vanishes within seconds. The hash itself also expires,
so when every worker is gone, so is the hash. Records hold numbers and ids only, never a token
or a subject.
"""

from __future__ import annotations

import json
import time

import redis

from eventgate.shared import keys

#: A record is good for this many status intervals (a worker that misses one is not gone yet).
TTL_INTERVALS = 3


def write(client: redis.Redis, worker_id: str, record: dict, ttl_seconds: float) -> None:
    """Store ``record`` for ``worker_id`` (adds ``updated_at`` and ``expires_at``)."""
    now = time.time()
    body = {**record, "worker": worker_id, "updated_at": now, "expires_at": now + ttl_seconds}
    pipe = client.pipeline(transaction=False)
    pipe.hset(keys.WORKERS, worker_id, json.dumps(body, separators=(",", ":")))
    pipe.expire(keys.WORKERS, max(1, int(ttl_seconds) + 1))
    pipe.execute()


def remove(client: redis.Redis, worker_id: str) -> None:
    """Delete the record of a worker that stops on purpose."""
    client.hdel(keys.WORKERS, worker_id)


def read(client: redis.Redis) -> list[dict]:
    """Every live worker's record, sorted by worker id; expired records are deleted."""
    now = time.time()
    live, stale = [], []
    for worker_id, raw in client.hgetall(keys.WORKERS).items():
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
        client.hdel(keys.WORKERS, *stale)
    return sorted(live, key=lambda record: str(record.get("worker")))
