"""The worker's status record: what ``eventgate status`` and the ops page show per worker.

Written by the metrics greenlet (stream/metrics.py) every ``status_interval_seconds`` through
shared/workers.py, and withdrawn when the worker stops. Walking every connection to sum the
queues costs about a microsecond per stream, once per interval, off the delivery path.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket

import redis

from shared import workers
from stream.lag import quantile

log = logging.getLogger("eventgate.stream.status")

def worker_id() -> str:
    """``host:pid`` of this process (computed per call: the module may be imported pre-fork)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def record(state) -> dict:  # noqa: ANN001 - StreamState
    """The status of this worker right now (numbers only)."""
    hub = state.hub
    subscribers = tuple(hub.subscribers)
    backlogs = [s.backlog_bytes for s in subscribers]
    counts, total = hub.lag.snapshot()
    previous = state.status_lag or ([0] * len(counts), 0.0)
    recent = [now - before for now, before in zip(counts, previous[0], strict=True)]
    recent_count = sum(recent)
    state.status_lag = (counts, total)
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
        "lag_mean_seconds": (total - previous[1]) / recent_count if recent_count else None,
        **values,
    }


def write(state) -> None:  # noqa: ANN001 - StreamState
    """Write this worker's record; Redis being away is not an error here (readyz says it)."""
    ttl = state.config.status_interval_seconds * workers.TTL_INTERVALS
    try:
        workers.write(state.redis, worker_id(), record(state), ttl)
    except (redis.RedisError, OSError) as error:
        log.debug("status record not written: %s", type(error).__name__)


def withdraw(state) -> None:  # noqa: ANN001 - StreamState
    """Remove this worker's record as it stops, so ``eventgate status`` drops it at once."""
    with contextlib.suppress(redis.RedisError, OSError):
        workers.remove(state.redis, worker_id())


def _finite(value: float | None) -> float | str | None:
    # JSON has no infinity: a lag past the last bucket reads "+Inf", as in Prometheus.
    return "+Inf" if value == float("inf") else value
