"""The gateway at a glance, from Redis: every stream worker's status record, their totals, and
Redis's own memory — what ``eventgate status`` prints and the ops status event carries.

Read-only except for deleting expired worker records (shared/workers.py). Holds numbers and
channel names, never a token, key or subject.
"""

from __future__ import annotations

import redis

from eventgate.shared import keys, workers

#: Summed over workers for the totals line.
SUMMED = (
    "streams", "channels", "queued_bytes", "queued_streams", "events", "delivered",
    "replayed", "lost", "slow_disconnects", "reconnects", "backfills", "written",
)


def overview(client: redis.Redis) -> dict:
    """``{"workers": [records], "totals": {...}, "redis": {...}}``. Raises redis errors."""
    records = workers.read(client)
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
    memory = client.info("memory")
    return {
        "workers": records,
        "totals": totals,
        "redis": {
            "used_memory_bytes": memory.get("used_memory"),
            "used_memory_human": memory.get("used_memory_human"),
            "maxmemory_bytes": memory.get("maxmemory"),
        },
    }


def log_lengths(client: redis.Redis, limit: int = 1000) -> tuple[dict[str, int], bool]:
    """``({channel: events in its log}, complete)`` for up to ``limit`` channels, found with
    SCAN (never KEYS, which blocks Redis); ``complete`` is False when more exist."""
    pattern = f"{keys.PREFIX}{{*}}:log"
    names: list[str] = []
    complete = True
    for key in client.scan_iter(match=pattern, count=1000, _type="stream"):
        if len(names) >= limit:
            complete = False
            break
        text = key.decode("utf-8") if isinstance(key, bytes) else key
        names.append(text[len(keys.PREFIX) + 1 : -len("}:log")])
    pipe = client.pipeline(transaction=False)
    for name in names:
        pipe.xlen(keys.log_key(name))
    return dict(zip(names, pipe.execute(), strict=True)), complete
