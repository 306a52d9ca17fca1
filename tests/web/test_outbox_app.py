"""An app of yours embedding ``EventGate(app, db=db)``: its ``/metrics`` (web.metrics) serves the
outbox metrics — rows waiting and the oldest one's age from its database, its relay's counts —
reading the depth once per interval however often it is scraped; its ``/readyz`` does not
depend on the outbox (rows waiting are the outbox working, not a fault)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine, event

from eventgate.outboxmetrics import OutboxGauges
from eventgate.shared.outbox import Outbox
from eventgate.web.extension import EXTENSION_KEY
from tests.servers import free_port


def write_rows(app, channel: str, count: int) -> None:
    """Rows committed into the app's outbox without waking its relay thread: they wait."""
    outbox = app.extensions[EXTENSION_KEY].outbox
    with outbox.engine.begin() as connection:
        for number in range(count):
            outbox.publish(connection, channel, number)


def test_an_app_with_an_outbox_serves_its_metrics(make_outbox_app, channel):
    # A Redis nothing listens on: the rows wait.
    app = make_outbox_app(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    write_rows(app, channel, 3)

    response = app.test_client().get("/metrics")

    assert response.status_code == 200
    found = {sample.name: sample.value
             for family in text_string_to_metric_families(response.get_data(as_text=True))
             for sample in family.samples if sample.name.startswith("eventgate_outbox_")}
    assert found["eventgate_outbox_rows"] == 3
    assert 0 <= found["eventgate_outbox_oldest_seconds"] < 60
    assert found["eventgate_outbox_relayed_total"] == 0
    assert found["eventgate_outbox_failed_total"] == 0


def test_readiness_does_not_depend_on_rows_waiting(make_outbox_app, channel):
    app = make_outbox_app()
    write_rows(app, channel, 2)
    assert app.extensions[EXTENSION_KEY].outbox.depth().rows == 2

    response = app.test_client().get("/readyz")

    assert response.status_code == 200 and response.get_json() == {"status": "ok"}


def test_a_scrape_storm_reads_the_depth_once(tmp_path, publisher):
    engine = create_engine(f"sqlite:///{tmp_path / 'outbox.db'}")
    outbox = Outbox(engine, publisher)
    outbox.create_tables()
    counted: list[str] = []
    event.listen(engine, "before_cursor_execute",
                 lambda conn, cursor, statement, *rest: counted.append(statement))
    registry = CollectorRegistry()
    registry.register(OutboxGauges(outbox.relay_, min_interval=60.0))

    for _ in range(50):
        assert registry.get_sample_value("eventgate_outbox_rows") == 0

    assert len([s for s in counted if "count(" in s.lower()]) == 1
    engine.dispose()
