"""The worker's status record: what ``eventgate status`` and the ops page show per worker.

Lag figures (p50, p99 as bucket bounds, mean) cover the last minute of events.

Written by the metrics greenlet (stream/metrics.py) every ``status_interval_seconds`` through
shared/status.py, and withdrawn when the worker stops. Walking every connection to sum the
queues happens once per interval, off the delivery path.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
from collections import deque

import redis

from eventgate.shared.status import TTL_INTERVALS, remove_record, write_record
from eventgate.stream.lag import quantile

log = logging.getLogger("eventgate.stream.status")

#: The lag figures of a record cover about this many seconds before it.
LAG_WINDOW_SECONDS = 60.0

def worker_id() -> str:
    """``host:pid`` of this process (computed per call: the module may be imported pre-fork)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def record(state) -> dict:  # noqa: ANN001 - StreamState
    """The status of this worker right now (numbers only)."""
    hub = state.hub
    subscribers = tuple(hub.subscribers)
    backlogs = [s.backlog_bytes for s in subscribers]
    counts, total = hub.lag.snapshot()
    # The lag of the last LAG_WINDOW_SECONDS: this snapshot minus the oldest one kept.
    now = time.monotonic()
    history = state.status_lag
    if history is None:
        history = state.status_lag = deque([(now, [0] * len(counts), 0.0)])
    history.append((now, counts, total))
    while len(history) > 2 and now - history[1][0] >= LAG_WINDOW_SECONDS:
        history.popleft()
    _, old_counts, old_total = history[0]
    recent = [new - old for new, old in zip(counts, old_counts, strict=True)]
    recent_count = sum(recent)
    values = state.metrics.values() if state.metrics is not None else {}
    return {
        "pid": os.getpid(),
        "started_at": state.started_at,
        "streams": len(subscribers),
        "channels": len(hub.channels),
        "queued_bytes": sum(backlogs),
        "max_queued_bytes": max(backlogs, default=0),
        "queued_streams": sum(1 for size in backlogs if size),
        "redis_connected": bool(state.broker.connected),
        "lag_p50_seconds": _finite(quantile(recent, 0.5)),
        "lag_p99_seconds": _finite(quantile(recent, 0.99)),
        "lag_mean_seconds": (total - old_total) / recent_count if recent_count else None,
        "lag_events": recent_count,
        **values,
    }


def write(state) -> None:  # noqa: ANN001 - StreamState
    """Write this worker's record; Redis being away is not an error here (readyz says it)."""
    ttl = state.config.status_interval_seconds * TTL_INTERVALS
    try:
        write_record(state.redis, worker_id(), record(state), ttl)
    except (redis.RedisError, OSError) as error:
        log.debug("status record not written: %s", type(error).__name__)


def withdraw(state) -> None:  # noqa: ANN001 - StreamState
    """Remove this worker's record as it stops, so ``eventgate status`` drops it at once."""
    with contextlib.suppress(redis.RedisError, OSError):
        remove_record(state.redis, worker_id())


def _finite(value: float | None) -> float | str | None:
    # JSON has no infinity: a lag past the last bucket reads "+Inf", as in Prometheus.
    return "+Inf" if value == float("inf") else value
