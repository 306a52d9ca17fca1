"""``eventgate relay`` as a real program: it relays what apps committed into the outbox, serves
the outbox metrics, writes its status record for ``eventgate status``, survives a Redis that is
down (one log line per failure burst), and stops on SIGTERM with exit status 0."""

from __future__ import annotations

import json
import time
import urllib.request
from signal import SIGINT, SIGTERM

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine

from eventgate.cli import main
from eventgate.shared import keys
from eventgate.shared.events import Event, read_page
from eventgate.shared.outbox import Outbox
from eventgate.shared.status import read_records
from tests.servers import free_port

METRICS = ("eventgate_outbox_rows", "eventgate_outbox_oldest_seconds",
           "eventgate_outbox_relayed_total", "eventgate_outbox_failed_total")


def commit(outbox: Outbox, channel: str, *values: object) -> None:
    with outbox.engine.begin() as connection:
        for value in values:
            outbox.publish(connection, channel, value, "order.updated")


def logged(client, channel: str) -> list[Event]:
    return [Event.from_entry(channel, *entry) for entry in read_page(client, channel, "0-0")]


def scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
        text = response.read().decode()
    return {sample.name: sample.value for family in text_string_to_metric_families(text)
            for sample in family.samples if sample.name in METRICS}


def test_relays_what_was_committed_and_stops_on_sigterm(
    outbox, database, start_relay, redis_server, channel
):
    commit(outbox, channel, {"n": 1}, {"n": 2})
    relay = start_relay(database, "--sweep-seconds", "0.2")
    client = redis_server.client()
    relay.wait_until(lambda: len(logged(client, channel)) == 2, 10, "the first two relayed")

    commit(outbox, channel, {"n": 3})  # committed while it runs: the next sweep takes it
    events = relay.wait_until(lambda: len(logged(client, channel)) == 3 and logged(client, channel),
                              10, "the third relayed")

    assert [json.loads(event.data) for event in events] == [{"n": 1}, {"n": 2}, {"n": 3}]
    assert {event.type for event in events} == {"order.updated"}
    assert outbox.depth().rows == 0
    assert relay.stop(SIGTERM) == 0
    assert "Traceback" not in relay.output()
    # (A round may fail on SQLite's lock while the test commits; the rows still go once.)
    assert "stopped (3 relayed, " in relay.output()


def test_serves_the_metrics_and_writes_its_status(
    outbox, database, start_relay, run_cli, redis_server, channel
):
    commit(outbox, channel, 1, 2, 3)
    port = free_port()
    relay = start_relay(database, "--metrics-port", str(port))

    relay.wait_until(lambda: scrape(port) == dict.fromkeys(METRICS, 0.0) | {
        "eventgate_outbox_relayed_total": 3.0}, 10, "the metrics after relaying three rows")
    # Its figures are at most a second old (the depth is read once a second at most).
    record = relay.wait_until(
        lambda: [r for r in read_records(redis_server.client(), keys.RELAYS)
                 if r["pid"] == relay.pid and r["relayed"] == 3 and r["rows"] == 0],
        10, "its status record")[0]
    assert record["failed"] == 0 and record["last_error"] is None
    assert not [r for r in read_records(redis_server.client()) if r.get("pid") == relay.pid]

    shown = run_cli("status")
    assert shown.returncode == 0, shown.stderr
    outbox_lines = [line for line in shown.stdout.splitlines() if line.startswith("outbox:")]
    assert outbox_lines == ["outbox: relays: 1   waiting rows: 0   oldest: 0.0 s   "
                            "relayed: 3   failed: 0"]
    as_json = json.loads(run_cli("status", "--json").stdout)
    assert as_json["outbox"] | {"oldest_seconds": 0} == {
        "relays": 1, "rows": 0, "oldest_seconds": 0, "relayed": 3, "failed": 0,
        "last_error": None}

    assert relay.stop(SIGTERM) == 0
    # Gone with the program: no relay, nothing said about an outbox.
    assert "outbox" not in json.loads(run_cli("status", "--json").stdout)


def test_rows_wait_while_redis_is_down_with_one_log_line(
    outbox, database, start_relay, channel
):
    dead_redis = f"redis://127.0.0.1:{free_port()}/0"
    commit(outbox, channel, "a", "b")
    created = time.time()
    port = free_port()
    relay = start_relay(database, "--metrics-port", str(port), "--sweep-seconds", "0.2",
                        redis_url=dead_redis)

    figures = relay.wait_until(
        lambda: (m := scrape(port))["eventgate_outbox_failed_total"] >= 3 and m,
        20, "three failed rounds")
    assert figures["eventgate_outbox_rows"] == 2
    assert 0 < figures["eventgate_outbox_oldest_seconds"] <= time.time() - created + 1.5
    assert figures["eventgate_outbox_relayed_total"] == 0
    assert outbox.depth().rows == 2
    warnings = [line for line in relay.output().splitlines() if "retrying until" in line]
    assert len(warnings) == 1, relay.output()
    assert relay.stop(SIGINT) == 0  # Ctrl-C, while it backs off: as clean as SIGTERM
    assert "Traceback" not in relay.output()


@pytest.mark.parametrize(
    ("args", "url", "sentence"),
    [
        ((), None, "no outbox database: set EVENTGATE_OUTBOX_URL or pass --database URL"),
        ((), "mysql://user:hunter2@db/app", "EVENTGATE_OUTBOX_URL names a 'mysql' database"),
        ((), "postgresql://user:hunter2@db:port/app",
         "EVENTGATE_OUTBOX_URL is not a database URL SQLAlchemy can read"),
        (("--database", "oracle://user:hunter2@db/app"), None,
         "the outbox URL names a 'oracle' database; the outbox supports PostgreSQL"),
    ],
)
def test_refuses_to_start_without_a_usable_database(
    args, url, sentence, monkeypatch, capsys, secret_keys, publish_key, tmp_path
):
    for name, value in {"SECRET_KEY": secret_keys[0], "PUBLISH_KEY": publish_key,
                        "VAR_DIR": str(tmp_path), "OUTBOX_URL": url}.items():
        if value is None:
            monkeypatch.delenv(f"EVENTGATE_{name}", raising=False)
        else:
            monkeypatch.setenv(f"EVENTGATE_{name}", value)

    assert main(["relay", *args]) == 2

    err = capsys.readouterr().err
    assert err.startswith("eventgate: ") and sentence in err
    assert "hunter2" not in err and err.count("\n") == 1


def listening(engine) -> bool:
    """Whether a session of the database LISTENs on the outbox's channel (the relay's)."""
    with engine.connect() as connection:
        return bool(connection.exec_driver_sql(
            "SELECT count(*) FROM pg_stat_activity WHERE query = 'LISTEN eventgate_outbox'"
        ).scalar())


def test_a_postgresql_commit_wakes_it_at_once(postgres_url, publisher, start_relay,
                                               redis_server, channel):
    outbox = Outbox(create_engine(postgres_url), publisher)
    outbox.create_tables()
    relay = start_relay(postgres_url, "--sweep-seconds", "30")
    relay.wait_until(lambda: listening(outbox.engine), 10, "the relay's LISTEN")
    client = redis_server.client()

    commit(outbox, channel, "woken")
    committed = time.monotonic()
    relay.wait_until(lambda: logged(client, channel), 5, "the row relayed")
    waited = time.monotonic() - committed

    # Its next sweep is 30 s away: only the NOTIFY of the commit can have woken it.
    assert waited < 0.5, f"relayed {waited:.2f}s after the commit"
    assert [json.loads(event.data) for event in logged(client, channel)] == ["woken"]
    assert relay.stop(SIGTERM) == 0
    outbox.engine.dispose()
