"""Stream metrics and status records, on a real gevent pool and real Redis: the plain counters
reach Prometheus (single-process and multiprocess mode), the lag histogram is exact, the worker
records appear and vanish, and /metrics is refused to proxied requests."""

from __future__ import annotations

import os
import signal
import socket
import time
import urllib.request
from bisect import bisect_left

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from eventgate.shared.status import read_records, write_record
from eventgate.stream.lag import BUCKETS_SECONDS, LagHistogram, quantile
from eventgate.stream.metrics import add_to_histogram
from tests.clients import StreamClient, stream_path
from tests.servers import LOOPBACK, wait_for
from tests.stack import http_get
from tests.stream.pool import StreamPool


def scrape(port: int) -> dict[str, float]:
    """name{labels} -> value of every sample of GET /metrics on ``port``."""
    with urllib.request.urlopen(f"http://{LOOPBACK}:{port}/metrics", timeout=5) as response:
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples


def test_histogram_filled_by_counts_equals_one_filled_by_observe():
    lags = [0.0, 0.0004, 0.001, 0.003, 0.2, 0.2, 3.0, 11.0, 60.0]
    observed_registry, copied_registry = CollectorRegistry(), CollectorRegistry()
    observed = Histogram("lag_seconds", "x", buckets=BUCKETS_SECONDS, registry=observed_registry)
    for lag in lags:
        observed.observe(lag)
    copied = Histogram("lag_seconds", "x", buckets=BUCKETS_SECONDS, registry=copied_registry)
    counts = [0] * (len(BUCKETS_SECONDS) + 1)
    for lag in lags:
        counts[bisect_left(BUCKETS_SECONDS, lag)] += 1
    add_to_histogram(copied, counts[:4] + [0] * (len(counts) - 4), sum(lags[:4]))
    add_to_histogram(copied, [0] * 4 + counts[4:], sum(lags[4:]))
    def samples(registry):
        text = generate_latest(registry).decode()
        return {(sample.name, sample.labels.get("le")): sample.value
                for family in text_string_to_metric_families(text)
                for sample in family.samples if not sample.name.endswith("_created")}

    copied_samples, observed_samples = samples(copied_registry), samples(observed_registry)
    assert copied_samples.keys() == observed_samples.keys()
    for key, value in observed_samples.items():
        assert abs(copied_samples[key] - value) < 1e-9, key


def test_lag_histogram_records_from_the_event_id():
    histogram = LagHistogram()
    now_ms = int(time.time() * 1000)
    histogram.record(f"{now_ms - 30}-0")  # 30 ms ago: the 0.05 bucket
    histogram.record(f"{now_ms + 60_000}-3")  # a clock ahead of ours counts as 0
    histogram.record(f"{now_ms - 20_000}-1")  # 20 s: +Inf
    counts, total = histogram.snapshot()
    assert counts[BUCKETS_SECONDS.index(0.05)] == 1
    assert counts[0] == 1 and counts[-1] == 1
    assert 20.0 < total < 21.0
    assert quantile(counts, 0.5) == 0.05
    assert quantile(counts, 1.0) == float("inf")
    assert quantile([0] * len(counts), 0.5) is None


def test_counters_reach_metrics_and_the_status_record(make_pool, tokens, publisher, channel,
                                                      redis_server):
    pool = make_pool(status_interval="0.5")
    token, _ = tokens.issue([channel])
    before = publisher.publish(channel, {"n": 0})
    for n in range(1, 4):
        publisher.publish(channel, {"n": n})
    # Resumes after the first event: three replayed, then two live.
    clients = [StreamClient(pool.port, stream_path(token), {"Last-Event-ID": before}).start()
               for _ in range(2)]
    for client in clients:
        client.wait_events(3)
    for n in range(4, 6):
        publisher.publish(channel, {"n": n})
    for client in clients:
        client.wait_events(5)

    def settled():
        found = scrape(pool.port)
        return found if found.get("eventgate_stream_events_delivered_total") == 4 else None

    received_before = sum(len(client.raw) for client in clients)
    found = wait_for(settled, 10, "delivered == 4 in /metrics")
    written = found["eventgate_stream_written_bytes_total"]
    received_after = wait_for(
        lambda: (n := sum(len(client.raw) for client in clients)) >= written and n, 5,
        "the clients to receive every byte written")
    assert found["eventgate_stream_events_total"] == 2
    assert found["eventgate_stream_events_replayed_total"] == 6
    assert found["eventgate_stream_open_streams"] == 2
    assert found["eventgate_stream_subscribed_channels"] == 1
    assert found["eventgate_stream_loss_events_total"] == 0
    assert found["eventgate_stream_hub_reconnects_total"] == 0
    # Every byte the clients received, the response heads included (heartbeats may add some).
    assert received_before <= found["eventgate_stream_written_bytes_total"] <= received_after
    assert found["eventgate_stream_delivery_lag_seconds_count"] == 2
    assert found['eventgate_stream_delivery_lag_seconds_bucket{le=+Inf}'] == 2
    assert found["eventgate_stream_delivery_lag_seconds_sum"] < 1.0

    client = redis_server.client()

    def record():
        found = [r for r in read_records(client) if r["pid"] in pool.worker_pids()]
        return found[0] if found and found[0]["delivered"] == 4 else None

    status = wait_for(record, 10, "the worker's status record")
    assert status["streams"] == 2 and status["channels"] == 1
    assert status["queued_bytes"] == 0 and status["redis_connected"] is True
    assert status["replayed"] == 6
    assert "token" not in str(status) and token not in str(status)
    for c in clients:
        c.close()
    pids = pool.worker_pids()
    pool.stop()
    # A worker that stops withdraws its record at once.
    assert not [r for r in read_records(client) if r["pid"] in pids]


def test_dead_workers_records_expire(redis_server):
    client = redis_server.client()
    write_record(client, "gone-host:1", {"pid": 1, "streams": 3}, ttl_seconds=0.2)
    assert any(r["worker"] == "gone-host:1" for r in read_records(client))
    time.sleep(0.3)  # on purpose: past the record's 0.2 s time to live
    assert not any(r["worker"] == "gone-host:1" for r in read_records(client))
    assert client.hget("eventgate:workers", "gone-host:1") is None


def test_slow_consumer_disconnects_are_counted(make_pool, tokens, publisher, channel):
    pool = make_pool(max_queue_bytes="65536")
    token, _ = tokens.issue([channel])
    stalled = socket.create_connection((LOOPBACK, pool.port))
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.sendall(f"GET {stream_path(token)} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    wait_for(lambda: pool.health()["streams"] == 1, 5, "the stream to open")
    pad = "x" * 16000
    for _ in range(1000):  # the kernel alone takes some megabytes on loopback
        publisher.publish(channel, {"pad": pad})
        if pool.health()["streams"] == 0:
            break
    wait_for(lambda: scrape(pool.port).get(
        "eventgate_stream_slow_consumer_disconnects_total") == 1, 10, "a slow disconnect")
    stalled.close()


def test_metrics_refused_through_a_proxy(make_pool):
    pool = make_pool()
    status, _, body = http_get(f"http://{LOOPBACK}:{pool.port}/metrics",
                               {"X-Forwarded-For": "203.0.113.9"})
    assert status == 404 and b"not_found" in body


def test_multiprocess_mode_sums_workers_and_forgets_dead_ones(redis_server, secret_keys,
                                                              publish_key, tmp_path, tokens,
                                                              publisher, channel):
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    (metrics_dir / "counter_99999.db").write_bytes(b"stale from an earlier run")
    env = {
        "EVENTGATE_SECRET_KEY": ",".join(secret_keys), "EVENTGATE_PUBLISH_KEY": publish_key,
        "EVENTGATE_REDIS_URL": redis_server.url, "EVENTGATE_VAR_DIR": str(tmp_path / "var"),
        "EVENTGATE_HEARTBEAT": "1", "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
    }
    pool = StreamPool(tmp_path, env, workers=2).start()
    try:
        assert not (metrics_dir / "counter_99999.db").exists()  # cleaned at start
        token, _ = tokens.issue([channel])
        clients = [StreamClient(pool.port, stream_path(token)).start() for _ in range(6)]
        wait_for(lambda: scrape(pool.port).get("eventgate_stream_open_streams") == 6, 10,
                 "6 open streams summed over both workers")
        publisher.publish(channel, {"n": 1})
        for client in clients:
            client.wait_events(1)
        wait_for(lambda: scrape(pool.port).get("eventgate_stream_events_delivered_total") == 6,
                 10, "6 deliveries summed over both workers")
        victim = pool.worker_pids()[0]
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: victim not in pool.worker_pids(), 10, "the worker to be replaced")
        # Its live gauges are gone; its counters stay (totals never go back).
        wait_for(lambda: not list(metrics_dir.glob(f"gauge_livesum_{victim}.db")), 10,
                 "the dead worker's gauges to be dropped")
        assert scrape(pool.port)["eventgate_stream_events_delivered_total"] == 6
        for client in clients:
            client.close()
    finally:
        pool.stop()
