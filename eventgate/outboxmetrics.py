"""The outbox's Prometheus metrics: rows waiting, the oldest one's age, rows relayed, failures.

A collector rather than gauges set by the relay: a scrape asks it, and it reads the depth from
the database at most once per ``min_interval`` seconds (``OutboxGauges.depth``), so a storm of
scrapes (or the status record, which asks the same object) costs one query a second at most.
The counters are the Relay's own (shared/relay.py), which only grow.

Served by ``eventgate relay --metrics-port`` (eventgate/relayprogram.py), and by the web app's
``/metrics`` for an app embedding ``EventGate(db=…)`` when its registry is per process
(web/metrics.py; not under gunicorn's multiprocess mode, whose values live in files).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy.exc import SQLAlchemyError

from eventgate.shared.outboxtable import Depth
from eventgate.shared.relay import Relay

log = logging.getLogger("eventgate.relay")


class OutboxGauges(Collector):
    """The four outbox metrics of one Relay, for a CollectorRegistry."""

    def __init__(self, relay: Relay, *, min_interval: float = 1.0) -> None:
        self.relay = relay
        self.min_interval = min_interval
        self._lock = threading.Lock()
        self._read_at = float("-inf")
        self._depth: Depth | None = None

    def depth(self) -> Depth | None:
        """The depth read at most ``min_interval`` ago, or read now; None while the database
        fails (a figure that old would mislead)."""
        with self._lock:
            now = time.monotonic()
            if now - self._read_at >= self.min_interval:
                self._read_at = now
                try:
                    self._depth = self.relay.depth()
                except SQLAlchemyError as error:
                    log.debug("outbox depth not read: %s", type(error).__name__)
                    self._depth = None
            return self._depth

    def collect(self) -> Iterator[Metric]:
        depth = self.depth()
        if depth is not None:
            yield GaugeMetricFamily(
                "eventgate_outbox_rows", "Outbox rows waiting to be relayed to Redis.",
                value=depth.rows,
            )
            yield GaugeMetricFamily(
                "eventgate_outbox_oldest_seconds",
                "Age of the oldest outbox row waiting (0 when none waits).",
                value=depth.oldest_seconds,
            )
        yield CounterMetricFamily(
            "eventgate_outbox_relayed",
            "Outbox rows this relay published (or replayed) and marked.",
            value=self.relay.relayed,
        )
        yield CounterMetricFamily(
            "eventgate_outbox_failed",
            "Relay rounds that stopped at a failed publish or database.",
            value=self.relay.failed,
        )

    def describe(self) -> list[Metric]:
        # Without describe(), registering would call collect() (a query) to learn the names.
        return [
            GaugeMetricFamily("eventgate_outbox_rows", ""),
            GaugeMetricFamily("eventgate_outbox_oldest_seconds", ""),
            CounterMetricFamily("eventgate_outbox_relayed", ""),
            CounterMetricFamily("eventgate_outbox_failed", ""),
        ]
