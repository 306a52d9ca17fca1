"""LagHistogram: delivery lag (publish → write) counted into fixed buckets with plain ints.

The hub records every event it broadcasts, once per event and process (never per subscriber),
so this must cost well under a microsecond: no lock, no Prometheus call, no allocation. Once a
second stream/metrics.py copies the new counts into a Prometheus histogram.

The lag is measured against the event id, whose first part is the Redis server's clock in
milliseconds when the event was stored. On one machine that is the worker's clock too; across
machines the figure also holds their clock difference (keep them on NTP). Negative lags (a
worker clock behind Redis's) count as zero.
"""

from __future__ import annotations

import time
from bisect import bisect_left

#: Upper bounds in seconds; the last bucket (above 10 s) is +Inf.
BUCKETS_SECONDS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)


class LagHistogram:
    """Counts per bucket since the process started (``counts[i]``: lags above the bound before
    ``BUCKETS_SECONDS[i]`` and up to it; the last entry is +Inf) and the lags' sum."""

    __slots__ = ("counts", "total_seconds")

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS_SECONDS) + 1)
        self.total_seconds = 0.0

    def record(self, event_id: str) -> None:
        """Count the lag of the event ``event_id`` (``ms-seq``) as of now."""
        ms, _, _ = event_id.partition("-")
        lag = time.time() - int(ms) / 1000.0
        if lag < 0.0:
            lag = 0.0
        self.counts[bisect_left(BUCKETS_SECONDS, lag)] += 1
        self.total_seconds += lag

    @property
    def count(self) -> int:
        return sum(self.counts)

    def snapshot(self) -> tuple[list[int], float]:
        """A copy of ``(counts, total_seconds)`` to diff against a later one."""
        return list(self.counts), self.total_seconds


def quantile(counts: list[int], q: float) -> float | None:
    """The upper bound of the bucket holding the ``q`` quantile of ``counts`` (per-bucket
    counts as in LagHistogram), or None when empty; +Inf shows as ``float('inf')``."""
    total = sum(counts)
    if total == 0:
        return None
    rank = q * total
    seen = 0
    for index, count in enumerate(counts):
        seen += count
        if seen >= rank and count:
            return BUCKETS_SECONDS[index] if index < len(BUCKETS_SECONDS) else float("inf")
    return float("inf")
