"""Stream worker metrics: plain counters of the hot path, copied to Prometheus once a second.

The hub, broker and subscribers count with plain ints (``hub.delivered``, ``broker.reconnects``,
``subscriber.written``…) because delivery is the hot path: a prometheus-client call per delivery
would cost more than the delivery's own bookkeeping, and in multiprocess mode it takes a lock
and writes an mmap. One greenlet per worker (``run``) adds the differences to the Prometheus
metrics every second and, every ``status_interval_seconds``, writes the worker's status record
(stream/status.py). ``GET /metrics`` on the stream port serves every worker's metrics; nginx
never forwards it, and a request that came through a proxy is refused.
"""

from __future__ import annotations

import contextlib
import logging
import time

import gevent
from flask import Blueprint, Response, current_app, request
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from eventgate.shared.pools import STREAM_STATE_KEY, exposition, is_proxied
from eventgate.stream import status
from eventgate.stream.lag import BUCKETS_SECONDS

log = logging.getLogger("eventgate.stream.metrics")

SYNC_SECONDS = 1.0

bp = Blueprint("stream_metrics", __name__)


class StreamMetrics:
    """The Prometheus side of one worker's counters. ``sync()`` copies what changed since the
    last call; it never blocks and does no I/O."""

    def __init__(self, hub, broker, registry: CollectorRegistry | None) -> None:  # noqa: ANN001
        self.hub = hub
        self.broker = broker
        self.registry = registry

        def counter(name: str, doc: str) -> Counter:
            return Counter(name, doc, registry=registry)

        def gauge(name: str, doc: str) -> Gauge:
            return Gauge(name, doc, registry=registry, multiprocess_mode="livesum")

        self.open_streams = gauge("eventgate_stream_open_streams", "Streams open now.")
        self.channels = gauge(
            "eventgate_stream_subscribed_channels",
            "Channels with at least one local stream (summed over workers).",
        )
        self.queued_bytes = gauge(
            "eventgate_stream_queued_bytes", "Bytes waiting for slow sockets, all streams."
        )
        self.counters = {
            "events": counter(
                "eventgate_stream_events_total", "Events fanned out (once per event and worker)."
            ),
            "delivered": counter(
                "eventgate_stream_events_delivered_total", "Live events written to streams."
            ),
            "replayed": counter(
                "eventgate_stream_events_replayed_total",
                "Events replayed from the log to resuming streams.",
            ),
            "lost": counter(
                "eventgate_stream_loss_events_total",
                "eventgate.lost notices sent (events no longer in the log).",
            ),
            "slow_disconnects": counter(
                "eventgate_stream_slow_consumer_disconnects_total",
                "Streams closed because their unsent backlog passed its bound.",
            ),
            "reconnects": counter(
                "eventgate_stream_hub_reconnects_total", "Pub/sub reconnections to Redis."
            ),
            "backfills": counter(
                "eventgate_stream_backfills_total", "Channel backfills from the log."
            ),
            "failovers": counter(
                "eventgate_stream_failovers_total",
                "Switches of Redis primary seen under Sentinel (each worker counts each one).",
            ),
            "written": counter(
                "eventgate_stream_written_bytes_total", "Bytes written to stream sockets."
            ),
        }
        self.lag = Histogram(
            "eventgate_stream_delivery_lag_seconds",
            "Publish to write, per event and worker (event id time vs the worker clock).",
            buckets=BUCKETS_SECONDS,
            registry=registry,
        )
        self._seen = dict.fromkeys(self.counters, 0)
        self._lag_seen = [0] * (len(BUCKETS_SECONDS) + 1)
        self._lag_sum_seen = 0.0

    def values(self) -> dict[str, int]:
        """The plain counters as of now (cumulative since the worker started)."""
        hub, broker = self.hub, self.broker
        return {
            "events": hub.events,
            "delivered": hub.delivered,
            "replayed": hub.replayed,
            "lost": hub.lost,
            "slow_disconnects": hub.slow_disconnects,
            "reconnects": broker.reconnects,
            "backfills": broker.backfills,
            "failovers": broker.failovers,
            "written": hub.closed_written + sum(s.written for s in tuple(hub.subscribers)),
        }

    def sync(self) -> None:
        """Add what every counter gained since the last call; set the gauges."""
        for name, value in self.values().items():
            delta = value - self._seen[name]
            if delta > 0:
                self.counters[name].inc(delta)
            self._seen[name] = value
        self.open_streams.set(len(self.hub.subscribers))
        self.channels.set(len(self.hub.channels))
        self.queued_bytes.set(sum(s.backlog_bytes for s in tuple(self.hub.subscribers)))
        counts, total = self.hub.lag.snapshot()
        add_to_histogram(
            self.lag,
            [now - before for now, before in zip(counts, self._lag_seen, strict=True)],
            total - self._lag_sum_seen,
        )
        self._lag_seen, self._lag_sum_seen = counts, total


def add_to_histogram(histogram: Histogram, counts: list[int], total: float) -> None:
    """Add per-bucket ``counts`` (the last is +Inf) and their ``total`` to ``histogram``.

    prometheus-client can only ``observe`` one value at a time, which would move the cost back
    to the hot path. Its histogram keeps one non-cumulative value per bucket (``_buckets``) and
    ``_sum``; we add to those directly. tests/stream/test_metrics.py checks that the exposed
    histogram equals one built by ``observe``, so an upgrade that changes this fails there.
    """
    if not any(counts):
        return
    buckets = histogram._buckets  # noqa: SLF001 - see the docstring
    if len(buckets) != len(counts):
        raise ValueError("the histogram's buckets do not match the counts")
    for value, count in zip(buckets, counts, strict=True):
        if count:
            value.inc(count)
    histogram._sum.inc(total)  # noqa: SLF001


def run(state, interval_seconds: float = SYNC_SECONDS) -> None:  # noqa: ANN001 - StreamState
    """The worker's metrics greenlet (spawn it): sync every second, write the status record
    every ``status_interval_seconds``. A failure is logged and the loop goes on."""
    status_every = state.config.status_interval_seconds
    next_status = 0.0
    while True:
        try:
            state.metrics.sync()
            now = time.monotonic()
            if now >= next_status:
                next_status = now + status_every
                status.write(state)
        except Exception:  # noqa: BLE001 - metrics must never take the worker down
            log.exception("metrics sync failed")
        gevent.sleep(interval_seconds)


@bp.get("/metrics")
def scrape() -> Response:
    if is_proxied(request.headers):
        return Response(
            '{"error": "not_found", "message": "There is nothing at this address."}\n',
            404, mimetype="application/json",
        )
    state = current_app.extensions[STREAM_STATE_KEY]
    with contextlib.suppress(Exception):
        state.metrics.sync()  # single-process mode: show the freshest values
    body, content_type = exposition(state.metrics.registry)
    return Response(body, 200, headers={"Content-Type": content_type})
