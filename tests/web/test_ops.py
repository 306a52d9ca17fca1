"""Ops features of the web app on real Redis: /metrics, the status page's access rules, the
status feed, ``eventgate status`` and ``eventgate replay``, request ids and JSON log lines."""

from __future__ import annotations

import base64
import json
import logging

from flask import jsonify
from prometheus_client.parser import text_string_to_metric_families

from eventgate.shared import keys, logformat
from eventgate.shared.status import write_record
from eventgate.shared.tokens import ChannelTokens
from eventgate.web.app import create_app
from eventgate.web.extension import current_eventgate
from eventgate.web.ops import STATUS_CHANNEL, StatusFeed
from tests.servers import wait_for


def samples(client) -> dict[str, float]:
    text = client.get("/metrics").get_data(as_text=True)
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            label = sample.labels.get("outcome")
            found[f"{sample.name}[{label}]" if label else sample.name] = sample.value
    return found


def test_metrics_count_publishes_by_outcome(make_config, auth, channel, dead_redis_url):
    app = create_app(make_config())

    @app.post("/t/fail")
    def fail():
        current_eventgate().publish(channel, {"n": 1})
        current_eventgate().publish(channel, {"n": 2})
        return jsonify(status="failed"), 500

    client = app.test_client()
    body = [{"channel": channel, "data": n} for n in range(3)]
    assert client.post("/api/events", json=body, headers=auth).status_code == 201
    assert client.post("/api/events", json=body[0], headers=auth).status_code == 201
    assert client.post("/t/fail").status_code == 500
    keyed = {**auth, "Idempotency-Key": f"k-{channel}"}
    for _ in range(2):  # the first stores two events, the repeat answers the same ids
        assert client.post("/api/events", json=body[:2], headers=keyed).status_code == 201
    found = samples(client)
    assert found["eventgate_events_published_total[stored]"] == 6
    assert found["eventgate_events_published_total[replayed]"] == 2
    assert found["eventgate_events_published_total[discarded]"] == 2
    assert found["eventgate_events_published_total[failed]"] == 0
    assert found["eventgate_publish_latency_seconds_count"] == 4  # one per batch
    assert 0 < found["eventgate_publish_latency_seconds_sum"] < 1

    down = create_app(make_config(redis_url=dead_redis_url)).test_client()
    assert down.post("/api/events", json=body, headers=auth).status_code == 503
    assert samples(down)["eventgate_events_published_total[failed]"] == 3


def test_metrics_are_refused_through_the_proxy(client):
    response = client.get("/metrics", headers={"X-Forwarded-For": "203.0.113.7"})
    assert response.status_code == 404
    assert response.get_json()["error"] == "not_found"


def basic(password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"ops:{password}".encode()).decode()}


def test_status_page_is_open_in_development_only(make_config):
    dev = create_app(make_config()).test_client()
    page = dev.get("/status")
    assert page.status_code == 200 and b"status.js" in page.data
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    assert dev.post("/status/token").status_code == 201

    prod = create_app(make_config(environment="production")).test_client()
    assert prod.get("/status").status_code == 404
    assert prod.post("/status/token").status_code == 404


def test_status_page_with_an_ops_key_needs_it(make_config, secret_keys):
    ops_key = "ops-key-for-the-test-0123456789abcdefgh"
    client = create_app(make_config(environment="production", ops_key=ops_key)).test_client()
    refused = client.get("/status")
    assert refused.status_code == 401
    assert refused.headers["WWW-Authenticate"].startswith("Basic")
    assert client.get("/status", headers=basic("wrong")).status_code == 401
    assert client.get("/status", headers=basic(ops_key)).status_code == 200
    answer = client.post("/status/token", headers=basic(ops_key))
    assert answer.status_code == 201
    grant = ChannelTokens(secret_keys).verify(answer.get_json()["token"])
    assert grant.resolve([]) == [STATUS_CHANNEL]  # the status channel and nothing else


def test_status_feed_publishes_one_event_per_interval(make_config, redis_server, read_log):
    app = create_app(make_config(status_interval_seconds=0.5))
    client = redis_server.client()
    client.delete(keys.STATUS_FEED_LOCK)
    write_record(client, "feed-host:7", {"pid": 7, "streams": 5, "delivered": 40,
                                       "lag_p99_seconds": 0.01}, ttl_seconds=5)
    feed = StatusFeed(app.extensions["eventgate"])
    other = StatusFeed(create_app(make_config(status_interval_seconds=0.5)).extensions["eventgate"])
    first = feed.publish_once()
    assert first is not None
    assert other.publish_once() is None  # another worker already did this interval
    # The next interval (0.5 s) is the other worker's to publish.
    wait_for(lambda: other.publish_once() is not None, 5, "the next interval")
    event = [e for e in read_log(STATUS_CHANNEL) if e.id == first][0]
    assert event.type == "status"
    data = json.loads(event.data)
    assert data["totals"]["streams"] >= 5 and data["totals"]["workers"] >= 1
    assert data["redis"]["used_memory_bytes"] > 0
    client.hdel(keys.WORKERS, "feed-host:7")


def test_status_feed_keeps_a_short_log(make_config, redis_server, monkeypatch):
    import eventgate.web.ops as ops_module

    monkeypatch.setattr(ops_module, "STATUS_EVENTS_KEPT", 5)
    app = create_app(make_config(status_interval_seconds=0.01))
    client = redis_server.client()
    feed = StatusFeed(app.extensions["eventgate"])
    for _ in range(300):
        client.delete(keys.STATUS_FEED_LOCK)
        feed.publish_once()
    # approximate trimming: whole radix-tree nodes (100 entries by default) at a time
    assert client.xlen(keys.log_key(STATUS_CHANNEL)) <= 5 + 100


def test_cli_status_text_and_json(run_cli, redis_server, channel, publisher_for_cli):
    client = redis_server.client()
    write_record(client, "cli-host:42", {"pid": 42, "streams": 3, "channels": 2,
                                       "queued_bytes": 2048, "delivered": 9,
                                       "redis_connected": True}, ttl_seconds=10)
    publisher_for_cli(channel, 3)
    result = run_cli("status", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert any(w["worker"] == "cli-host:42" and w["streams"] == 3 for w in data["workers"])
    assert data["logs"]["lengths"][channel] == 3
    assert data["redis"]["used_memory_bytes"] > 0
    text = run_cli("status")
    assert text.returncode == 0, text.stderr
    assert "cli-host:42" in text.stdout and "2 KiB" in text.stdout
    assert "open streams:" in text.stdout
    client.hdel(keys.WORKERS, "cli-host:42")


def test_cli_status_without_redis_is_one_line(run_cli, dead_redis_url):
    result = run_cli("status", EVENTGATE_REDIS_URL=dead_redis_url)
    assert result.returncode == 1 and "Redis is not answering" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_replay_prints_the_log_after_an_id(run_cli, channel, publisher_for_cli):
    ids = publisher_for_cli(channel, 2500)
    result = run_cli("replay", channel, "--since", ids[9], "--json", "--progress")
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["data"]["n"] for line in lines] == list(range(10, 2500))
    assert [line["id"] for line in lines] == ids[10:]
    assert "ev" in result.stderr  # the progress bar went to stderr, never into the output

    whole = run_cli("replay", channel, "--since", "0", "--limit", "5")
    assert whole.returncode == 0, whole.stderr
    assert [line.split()[0] for line in whole.stdout.splitlines()] == ids[:5]
    assert whole.stdout.splitlines()[0].endswith('tick {"n":0}')
    assert whole.stderr == ""  # no terminal: no progress bar

    bad = run_cli("replay", channel, "--since", "yesterday")
    assert bad.returncode == 2 and "--since" in bad.stderr
    assert run_cli("replay", "bad channel!", "--since", "0").returncode == 2


def test_request_id_and_json_lines(make_config, caplog, capsys):
    app = create_app(make_config(log_format="json"))

    @app.get("/t/log")
    def log_something():
        logging.getLogger("eventgate.test").warning("hello %s", "there", extra={"n": 3})
        return jsonify(ok=True)

    client = app.test_client()
    client.get("/t/log", headers={"X-Request-ID": "abc-123"})
    client.get("/t/log", headers={"X-Request-ID": "evil id {\"x\": 1}"})
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()
             if line.startswith("{") and "hello" in line]
    assert [line["request_id"] for line in lines] == ["abc-123", "-"]
    assert lines[0]["message"] == "hello there" and lines[0]["n"] == 3
    assert lines[0]["level"] == "warning" and lines[0]["logger"] == "eventgate.test"
    logformat.configure("text")  # leave the text format for the other tests

