"""Faults we can cause on one machine, with clients connected or reconnecting throughout: each
client must end with exactly the whole published sequence, in order, no duplicates."""

from __future__ import annotations

import json
import os
import signal
import socket
import time

from tests.clients import EventSourceClient, StreamClient, stream_path
from tests.servers import wait_for
from tests.stream.paced import PacedPublisher


def assert_exact(client: EventSourceClient, channel: str, expected: list[int], timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = on_channel(client, channel)
        if len(got) >= len(expected):
            break
        time.sleep(0.05)
    got = on_channel(client, channel)
    assert got == expected, (
        f"{len(got)} of {len(expected)}; connections={client.connections}; "
        f"first missing={sorted(set(expected) - set(got))[:5]}; "
        f"duplicates={len(got) - len(set(got))}"
    )
    assert not [e for e in client.events if e.type == "eventgate.lost"]


def on_channel(client: EventSourceClient, channel: str) -> list[int]:
    out = []
    for event in list(client.events):
        if event.type != "message":
            continue
        owner = event.last_event_id.split(",")[0].split("=")[0] if "=" in (
            event.last_event_id) else client.channels[0] if client.channels else None
        if owner in (channel, None):
            out.append(json.loads(event.data)["n"])
    return out


def start_clients(pool, tokens, channels):
    one, _ = tokens.issue([channels[0]])
    both, _ = tokens.issue(channels)
    clients = [EventSourceClient(pool.port, one, (channels[0],)).start() for _ in range(3)]
    clients.append(EventSourceClient(pool.port, both, tuple(channels)).start())
    wait_for(lambda: all(c.connections for c in clients), 10, "clients to connect")
    time.sleep(0.3)
    return clients


def check_all(clients, paced, channels):
    paced.wait()
    for client in clients[:3]:
        assert_exact(client, channels[0], paced.accepted[channels[0]])
    for name in channels:
        assert_exact(clients[3], name, paced.accepted[name])
    for client in clients:
        client.stop()


def test_client_kill_pubsub_then_burst(make_pool, tokens, publisher, channel, redis_server):
    pool = make_pool()
    channels = [channel, f"{channel}.b"]
    clients = start_clients(pool, tokens, channels)
    redis_server.client().client_kill_filter(_type="pubsub")
    paced = PacedPublisher(publisher, channels, total=200, rate=2000).start()
    check_all(clients, paced, channels)
    assert "pub/sub connection lost" in pool.log_text()


def test_redis_restart_midstream(make_pool, tokens, publisher, channel, redis_server):
    pool = make_pool()
    channels = [channel, f"{channel}.b"]
    clients = start_clients(pool, tokens, channels)
    paced = PacedPublisher(publisher, channels, total=400, rate=100).start()
    time.sleep(1.0)
    redis_server.restart(down_seconds=1.0)
    check_all(clients, paced, channels)
    assert paced.failures > 0  # publishing really did fail while Redis was down
    assert pool.health()["redis_connected"]


def test_kill_9_of_a_stream_worker(make_pool, tokens, publisher, channel):
    pool = make_pool()
    channels = [channel, f"{channel}.b"]
    clients = start_clients(pool, tokens, channels)
    paced = PacedPublisher(publisher, channels, total=300, rate=100).start()
    time.sleep(1.0)
    [worker] = pool.worker_pids()
    os.kill(worker, signal.SIGKILL)
    check_all(clients, paced, channels)
    assert all(c.connections >= 2 for c in clients)
    assert pool.worker_pids() != [worker]


def test_hup_reload_ends_streams_with_jittered_retry(make_pool, tokens, publisher, channel):
    pool = make_pool(retry_ms="2000")
    channels = [channel, f"{channel}.b"]
    clients = start_clients(pool, tokens, channels)
    paced = PacedPublisher(publisher, channels, total=400, rate=100).start()
    time.sleep(1.0)
    [old] = pool.worker_pids()
    cut = time.monotonic()
    pool.signal(signal.SIGHUP)
    check_all(clients, paced, channels)
    assert old not in pool.worker_pids()
    retries = {c.retry_ms for c in clients}
    assert len(retries) > 1, retries  # each connection was told its own delay
    reconnects = sorted(c.connect_times[1] - cut for c in clients)
    assert reconnects[-1] - reconnects[0] > 0.2, reconnects  # spread, not one storm
    assert "Traceback" not in pool.log_text()


def test_client_that_never_reads_is_dropped_others_on_time(
    make_pool, tokens, publisher, channel
):
    pool = make_pool(max_queue_bytes=str(1024 * 1024))
    token, _ = tokens.issue([channel])
    stalled = socket.create_connection(("127.0.0.1", pool.port))
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.sendall(f"GET {stream_path(token)} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    reader = StreamClient(pool.port, stream_path(token)).start()
    wait_for(lambda: pool.health()["streams"] == 2, 5, "two streams")
    payload = "x" * 4000
    started = time.monotonic()
    for start in range(0, 2000, 10):  # 4 MB/s in bursts of 40 KB
        publisher.publish_many(
            [publisher.draft(channel, {"n": n, "pad": payload}) for n in range(start, start + 10)]
        )
        time.sleep(0.01)
    reader.wait_events(2000, timeout=20)
    elapsed = time.monotonic() - started
    assert [json.loads(e.data)["n"] for e in reader.events] == list(range(2000))
    wait_for(lambda: pool.health()["streams"] == 1, 5, "the stalled client to be dropped")
    assert elapsed < 10
    stalled.close()
    reader.close()
