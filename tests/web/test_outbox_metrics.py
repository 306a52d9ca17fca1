"""An app embedding ``EventGate(app, db=db)`` with web.metrics serves the outbox metrics on
its ``/metrics``: rows waiting and the oldest one's age from its database, its relay's counts;
the depth is read once per interval however often it is scraped."""

from __future__ import annotations

from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine, event

from eventgate.outboxmetrics import OutboxGauges
from eventgate.shared.outbox import Outbox
from eventgate.web import metrics
from eventgate.web.extension import EventGate
from tests.servers import free_port


def test_an_app_with_an_outbox_serves_its_metrics(make_config, tmp_path, channel, monkeypatch):
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)  # a registry of its own
    app = Flask(__name__)
    app.config["SQLALCHEMY_DATABASE_URI"] = f"sqlite:///{tmp_path / 'app.db'}"
    db = SQLAlchemy(app)
    # A Redis nothing listens on: the rows wait.
    gate = EventGate(app, make_config(redis_url=f"redis://127.0.0.1:{free_port()}/0"), db=db)
    metrics.init_app(app)
    gate.outbox.create_tables()
    with gate.outbox.engine.begin() as connection:
        for number in range(3):
            gate.outbox.publish(connection, channel, number)

    response = app.test_client().get("/metrics")

    assert response.status_code == 200
    found = {sample.name: sample.value
             for family in text_string_to_metric_families(response.get_data(as_text=True))
             for sample in family.samples if sample.name.startswith("eventgate_outbox_")}
    assert found["eventgate_outbox_rows"] == 3
    assert 0 <= found["eventgate_outbox_oldest_seconds"] < 60
    assert found["eventgate_outbox_relayed_total"] == 0
    assert found["eventgate_outbox_failed_total"] == 0
    gate.outbox.engine.dispose()


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
