"""Web app metrics: events published by outcome and publish latency, at ``GET /metrics``.

Counted where every publish goes through, ``EventGate.publish_many`` (the API, the after-commit
queue, the demo), so the numbers are the same whichever way an event was sent. Outcomes:
``stored`` (Redis confirmed), ``failed`` (Redis did not; nothing was published) and
``discarded`` (queued after-commit events dropped because their request failed).

``/metrics`` answers on the web port for a scraper on the machine; nginx answers 404 for it on
the public entry, and a request that came through a proxy is refused here too. Under gunicorn
the numbers of every worker are summed (shared/pools.py, multiprocess mode).

With the transactional outbox (``EventGate(app, db=db)``) and a registry of its own (not
gunicorn's multiprocess mode) the app serves the outbox metrics too
(eventgate/outboxmetrics.py).

Under Sentinel, ``eventgate_web_failovers_total`` counts the switches of primary the workers saw
(each worker counts each failover it notices, on its next connection to Redis or readiness
probe).
"""

from __future__ import annotations

from flask import Blueprint, Flask, Response, current_app, request
from prometheus_client import CollectorRegistry, Counter, Histogram

from eventgate.shared.pools import app_registry, exposition, is_proxied
from eventgate.shared.primary import primary_of
from eventgate.web.errors import error_response
from eventgate.web.extension import EXTENSION_KEY

METRICS_KEY = "eventgate.metrics"
PUBLISH_BUCKETS_SECONDS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
)

bp = Blueprint("metrics", __name__)


class PublishMetrics:
    """What EventGate reports about publishing (``EventGate.metrics``)."""

    def __init__(self, registry: CollectorRegistry | None) -> None:
        self.registry = registry
        self.published = Counter(
            "eventgate_events_published_total",
            "Events handed to Redis or dropped, by outcome (stored, replayed, failed, discarded).",
            ["outcome"],
            registry=registry,
        )
        self.latency = Histogram(
            "eventgate_publish_latency_seconds",
            "Time to store and publish one batch in Redis (one round trip), failures included.",
            buckets=PUBLISH_BUCKETS_SECONDS,
            registry=registry,
        )
        self.failovers = Counter(
            "eventgate_web_failovers_total",
            "Switches of Redis primary seen under Sentinel (each worker counts each one).",
            registry=registry,
        )
        # Every outcome shows, at 0, from the start; looked up once, not on every publish.
        self._by_outcome = {
            outcome: self.published.labels(outcome)
            for outcome in ("stored", "replayed", "failed", "discarded")
        }

    def observe(self, outcome: str, events: int, seconds: float | None = None) -> None:
        counter = self._by_outcome.get(outcome)
        (counter or self.published.labels(outcome)).inc(events)
        if seconds is not None:
            self.latency.observe(seconds)


def init_app(app: Flask) -> PublishMetrics:
    """Count the publishes of ``app``'s EventGate and serve ``/metrics``; call after EventGate."""
    publish_metrics = PublishMetrics(app_registry())
    gate = app.extensions[EXTENSION_KEY]
    gate.metrics = publish_metrics
    primary = primary_of(gate.client)
    if primary is not None:
        primary.on_switch = publish_metrics.failovers.inc
    if gate.outbox is not None and publish_metrics.registry is not None:
        # EventGate(app, db=db): the outbox metrics of this process's relay (not under
        # gunicorn's multiprocess mode, whose scrape reads files: run `eventgate relay
        # --metrics-port` for them there). Imported here: only the outbox needs SQLAlchemy.
        from eventgate.outboxmetrics import OutboxGauges

        publish_metrics.registry.register(OutboxGauges(gate.outbox.relay_))
    app.extensions[METRICS_KEY] = publish_metrics
    app.register_blueprint(bp)
    return publish_metrics


@bp.get("/metrics")
def scrape() -> Response:
    if is_proxied(request.headers):
        return error_response("not_found", "there is nothing at this URL.", 404)
    body, content_type = exposition(current_app.extensions[METRICS_KEY].registry)
    return Response(body, 200, headers={"Content-Type": content_type})
