"""Ops on the deployed stack (supervisord, nginx, two pools of two workers, JSON logs): health
and readiness through nginx, metrics in multiprocess mode on the loopback app ports only, the
periodic status event, ``eventgate status``, and log lines with nginx's request ids."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys

import pytest
from prometheus_client.parser import text_string_to_metric_families

from eventgate.shared.tokens import ChannelTokens
from eventgate.web.ops import STATUS_CHANNEL
from tests.clients import EventSourceClient
from tests.servers import child_env, wait_for
from tests.stack import REPO_ROOT, http_get

pytestmark = pytest.mark.stack(
    stream_workers=2, web_workers=2,
    settings={"EVENTGATE_HEARTBEAT": "1", "EVENTGATE_STATUS_INTERVAL": "0.5",
              "EVENTGATE_LOG_FORMAT": "json"},
)


def scrape(port: int) -> dict[str, float]:
    status, headers, body = http_get(f"http://127.0.0.1:{port}/metrics")
    assert status == 200, body
    found = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            label = sample.labels.get("outcome")
            found[f"{sample.name}[{label}]" if label else sample.name] = sample.value
    return found


def test_health_and_readiness_through_nginx(stack):
    # The stack fixture waits for liveness (/healthz); readiness follows once a worker has its
    # Redis connections. Which worker answers is the kernel's choice, so no request can pick
    # one: ask each path until it answers 200 four times in a row.
    for path in ("/readyz", "/streams/readyz"):
        wait_for(lambda path=path: all(http_get(stack.url(path))[0] == 200 for _ in range(4)),
                 15, f"GET {path} answering 200 four times in a row")
    for path in ("/healthz", "/readyz", "/streams/healthz", "/streams/readyz"):
        status, headers, body = http_get(stack.url(path))
        assert status == 200, (path, body)
        assert headers["Content-Type"].startswith("application/json"), path
    for path in ("/metrics", "/streams/metrics", "/metrics/x"):
        status, _, body = http_get(stack.url(path))
        assert status == 404 and json.loads(body)["error"] == "not_found", path


def test_metrics_sum_every_worker_on_the_app_ports(stack, channel):
    tokens = ChannelTokens(stack.config.secret_keys)
    token, _ = tokens.issue([channel])
    clients = [EventSourceClient(stack.port, token, (channel,)).start() for _ in range(4)]
    wait_for(lambda: scrape(stack.stream_port).get("eventgate_stream_open_streams") == 4, 10,
             "4 open streams in the stream pool's metrics")
    for n in range(10):  # each POST may land on either web worker
        status, _, body = stack.post("/api/events", {"channel": channel, "data": {"n": n}})
        assert status == 201, body
    for client in clients:
        assert client.wait_data([{"n": n} for n in range(10)]) == [{"n": n} for n in range(10)]
    wait_for(lambda: scrape(stack.stream_port).get("eventgate_stream_events_delivered_total")
             == 40, 10, "40 deliveries")
    web = scrape(stack.web_port)
    assert web["eventgate_events_published_total[stored]"] >= 10  # + the status events
    assert web["eventgate_publish_latency_seconds_count"] >= 10
    stream = scrape(stack.stream_port)
    assert stream["eventgate_stream_delivery_lag_seconds_count"] >= 10
    assert stream["eventgate_stream_subscribed_channels"] >= 1
    for pool in ("web", "stream"):
        assert list((stack.var_dir / "metrics" / pool).glob("*.db")), pool
    for client in clients:
        client.stop()


def test_status_events_and_the_status_command(stack):
    tokens = ChannelTokens(stack.config.secret_keys)
    token, _ = tokens.issue([STATUS_CHANNEL])
    watcher = EventSourceClient(stack.port, token, (STATUS_CHANNEL,)).start()
    with contextlib.suppress(AssertionError):  # the count is checked below
        wait_for(lambda: len(watcher.data("status")) >= 3, 10, "three status events")
    statuses = watcher.data("status")
    watcher.stop()
    assert len(statuses) >= 3  # one every 0.5 s, however many web workers
    assert statuses[-1]["totals"]["workers"] == 2
    assert statuses[-1]["totals"]["streams"] >= 1  # the watcher itself

    result = subprocess.run(
        [sys.executable, "-m", "eventgate.cli", "status", "--json"], cwd=REPO_ROOT,
        env=child_env(EVENTGATE_VAR_DIR=str(stack.var_dir),
                      EVENTGATE_REDIS_PORT=str(stack.redis_port)),
        capture_output=True, text=True, timeout=30, check=False,
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert len(data["workers"]) == 2
    assert all(w["redis_connected"] for w in data["workers"])
    assert data["logs"]["lengths"][STATUS_CHANNEL] >= 3


def test_json_log_lines_carry_request_ids_and_no_secret(stack, channel):
    status, _, _ = http_get(stack.url("/healthz"), {"X-Request-ID": "ops-test-42"})
    assert status == 200
    status, _, _ = http_get(stack.url("/no/such/page"), {"X-Request-ID": "ops-test-43"})
    assert status == 404
    token, _ = ChannelTokens(stack.config.secret_keys).issue([channel])
    http_get(stack.url(f"/streams?token={token}&channel=forbidden.one"))  # a 403, logged

    def access_lines():
        lines = [json.loads(line) for line in stack.log("web").splitlines()
                 if line.startswith("{") and '"gunicorn.access"' in line]
        return [line for line in lines if line["request_id"].startswith("ops-test-")] or None

    lines = wait_for(access_lines, 10, "the web access lines")
    assert {(line["request_id"], line["path"], line["status"]) for line in lines} >= {
        ("ops-test-42", "/healthz", 200), ("ops-test-43", "/no/such/page", 404)}
    assert any("ops-test-42" in line for line in stack.log("nginx-access").splitlines())
    for pool in ("web", "stream"):
        for line in stack.log(pool).splitlines():
            if line.strip():
                json.loads(line)  # every line of both pools is a JSON object
    everything = "".join(stack.log(name) for name in (
        "web", "stream", "nginx", "nginx-access", "nginx-error", "supervisord"))
    for secret in (token, stack.publish_key, stack.secret_key):
        assert secret not in everything
