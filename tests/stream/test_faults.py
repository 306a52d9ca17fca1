"""Faults we can cause on one machine, with clients connected or reconnecting throughout: each
client must end with exactly the whole published sequence, in order, no duplicates."""

from __future__ import annotations

import json
import os
import signal
import socket
import time

from tests.clients import StreamClient, stream_path
from tests.sequences import assert_sequences, connect_clients
from tests.servers import wait_for
from tests.stream.paced import PacedPublisher


def test_client_kill_pubsub_then_burst(make_pool, tokens, publisher, channel, redis_server):
    pool = make_pool()
    channels = [channel, f"{channel}.b"]
    clients = connect_clients(pool.port, tokens, channels)
    redis_server.client().client_kill_filter(_type="pubsub")
    paced = PacedPublisher(publisher, channels, total=200, rate=2000).start()
    assert_sequences(clients, paced, channels)
    assert "pub/sub connection lost" in pool.log_text()


def test_redis_restart_midstream(make_pool, tokens, publisher, channel, redis_server):
    pool = make_pool()
    channels = [channel, f"{channel}.b"]
    clients = connect_clients(pool.port, tokens, channels)
    paced = PacedPublisher(publisher, channels, total=400, rate=100).start()
    paced.wait_count(100)  # mid-stream
    redis_server.restart(down_seconds=1.0)
    assert_sequences(clients, paced, channels)
    assert paced.failures > 0  # publishing really did fail while Redis was down
    assert pool.health()["redis_connected"]


def test_kill_9_of_a_stream_worker(make_pool, tokens, publisher, channel):
    pool = make_pool()
    channels = [channel, f"{channel}.b"]
    clients = connect_clients(pool.port, tokens, channels)
    paced = PacedPublisher(publisher, channels, total=300, rate=100).start()
    paced.wait_count(100)  # mid-stream
    [worker] = pool.worker_pids()
    os.kill(worker, signal.SIGKILL)
    assert_sequences(clients, paced, channels)
    assert all(c.connections >= 2 for c in clients)
    assert pool.worker_pids() != [worker]


def test_hup_reload_ends_streams_with_jittered_retry(make_pool, tokens, publisher, channel):
    pool = make_pool(retry_ms="2000")
    channels = [channel, f"{channel}.b"]
    clients = connect_clients(pool.port, tokens, channels)
    paced = PacedPublisher(publisher, channels, total=400, rate=100).start()
    paced.wait_count(100)  # mid-stream
    [old] = pool.worker_pids()
    cut = time.monotonic()
    pool.signal(signal.SIGHUP)
    assert_sequences(clients, paced, channels)
    assert old not in pool.worker_pids()
    retries = {c.retry_ms for c in clients}
    assert len(retries) > 1, retries  # each connection was told its own delay
    # When each client tried again, not when it was answered: under load the new worker boots
    # late and answers every waiting client at the same moment, however spread their retries.
    attempts = [[t - cut for t in c.attempt_times if t > cut] for c in clients]
    assert all(attempts), attempts
    retried = sorted(after_cut[0] for after_cut in attempts)
    assert retried[-1] - retried[0] > 0.2, retried  # spread, not one storm
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
        time.sleep(0.01)  # on purpose: the pace (4 MB/s)
    reader.wait_events(2000, timeout=20)
    elapsed = time.monotonic() - started
    assert [json.loads(e.data)["n"] for e in reader.events] == list(range(2000))
    wait_for(lambda: pool.health()["streams"] == 1, 5, "the stalled client to be dropped")
    assert elapsed < 10
    stalled.close()
    reader.close()


def test_pubsub_output_buffer_limit_drop_is_backfilled(
    make_pool, tokens, publisher, channel, redis_server
):
    """Redis drops a subscriber whose output buffer passes its limit (reliability.md E3: silently
    for redis-py, and PUBLISH had counted it as a receiver). A 2 MB burst does that here."""
    pool = make_pool()
    admin = redis_server.client()
    old = admin.config_get("client-output-buffer-limit")["client-output-buffer-limit"]
    clients = connect_clients(pool.port, tokens, [channel, f"{channel}.b"])
    admin.config_set("client-output-buffer-limit", "pubsub 256kb 128kb 1")
    try:
        pad = "y" * 20000
        drafts = [publisher.draft(channel, {"n": n, "pad": pad}) for n in range(100)]
        publisher.publish_many(drafts)
    finally:
        admin.config_set("client-output-buffer-limit", old)
    for client in clients:
        got = client.wait_data(list(range(100)), timeout=20)
        assert [d["n"] for d in got] == list(range(100))
        client.stop()
    assert "pub/sub connection lost" in pool.log_text()


def test_stream_cut_before_its_first_event_resumes_from_its_opening_cursor(
    make_pool, tokens, publisher, channel
):
    # Every event below is published while the clients are between connections (the worker
    # is dead, their reconnect waits at least half of retry_ms): none reaches them live. Only
    # the cursor of the opening frame, sent before any event existed, can bring it to them.
    pool = make_pool(retry_ms="1000")
    channels = [channel, f"{channel}.b"]
    clients = connect_clients(pool.port, tokens, channels)
    wait_for(lambda: all(c.last_event_id for c in clients), 5, "a cursor before any event")
    assert not any(c.events for c in clients)
    [worker] = pool.worker_pids()
    os.kill(worker, signal.SIGKILL)
    cut = time.monotonic()
    for n in range(20):
        for name in channels:
            publisher.publish(name, {"n": n, "on": name})
    expected = [{"n": n, "on": channel} for n in range(20)]
    for client in clients[:3]:
        assert client.wait_data(expected) == expected, story(pool, clients, cut)
    both = clients[3].wait_data(expected * 2)
    for name in channels:
        assert [d for d in both if d["on"] == name] == [
            {"n": n, "on": name} for n in range(20)
        ], story(pool, clients, cut)
    for client in clients:
        assert client.connections >= 2 and client.failed_status is None, story(pool, clients, cut)
        client.stop()


def story(pool, clients, since: float) -> str:
    """Each client's story since the monotonic time ``since`` (a fault) and the pool's log."""
    lines = [f"client {n}: {client.story(since)}" for n, client in enumerate(clients)]
    return "\n".join([*lines, "pool log:", pool.log_text()[-3000:]])


def test_streams_waiting_for_a_respawned_worker_open_on_their_first_reconnect(
    make_pool, tokens, publisher, channel
):
    # The clients reconnect while no worker runs (the master is stopped: it respawns none), so
    # the new worker finds them all waiting as it boots and opens their streams while its
    # pub/sub connection is still being made. Those channels must be subscribed too: before,
    # every such stream waited for a confirmation that never came and ended with "redis
    # unavailable, retry", and so again, for as long as the channel kept a local stream: the
    # likely cause of the test above's rare failures under load.
    pool = make_pool(retry_ms="1000")
    channels = [channel, f"{channel}.b"]
    clients = connect_clients(pool.port, tokens, channels)
    [worker] = pool.worker_pids()
    pool.signal(signal.SIGSTOP)
    try:
        os.kill(worker, signal.SIGKILL)
        cut = time.monotonic()
        for n in range(20):
            for name in channels:
                publisher.publish(name, {"n": n, "on": name})
        wait_for(lambda: all(len(c.attempt_times) >= 2 for c in clients), 10,
                 "every client to try again")
    finally:
        pool.signal(signal.SIGCONT)
    expected = [{"n": n, "on": channel} for n in range(20)]
    for client in clients[:3]:
        assert client.wait_data(expected) == expected, story(pool, clients, cut)
    assert len(clients[3].wait_data(expected * 2)) == 40, story(pool, clients, cut)
    for client in clients:
        assert not any(b"redis unavailable" in ending for ending in client.endings), story(
            pool, clients, cut)
        assert client.connections == 2 and client.failed_status is None, story(
            pool, clients, cut)
        client.stop()
