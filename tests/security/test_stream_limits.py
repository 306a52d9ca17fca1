"""Stream admission on a real gevent pool: streams per token subject (Redis leases, across
workers, surviving kill -9) and per worker process — refused before the first byte with JSON and
Retry-After, and given back as soon as a stream closes."""

from __future__ import annotations

import os
import signal
import time

from eventgate.shared import keys
from tests.clients import StreamClient, stream_path
from tests.servers import wait_for


def open_stream(port: int, token: str, channels: tuple[str, ...] = ()) -> StreamClient:
    return StreamClient(port, stream_path(token, channels)).start()


def refused(client: StreamClient, status: int, code: str) -> int:
    """Assert ``client`` was refused with ``status``/``code``; return its Retry-After."""
    assert client.status == status, (client.status, client.body[:200])
    assert client.response_headers["content-type"].startswith("application/json")
    assert client.json()["error"] == code and client.json()["message"]
    retry_after = int(client.response_headers["retry-after"])
    assert retry_after >= 1
    client.close()
    return retry_after


def leases(redis_server, subject: str) -> int:
    return redis_server.client().zcard(keys.subject_streams_key(subject))


def test_per_subject_limit_across_workers(make_pool, tokens, channel, redis_server, unique):
    pool = make_pool(workers=2, max_streams_per_subject="3")
    alice, bob = f"alice-{unique}", f"bob-{unique}"
    # Different tokens of one subject, on different workers: the count is the subject's.
    held = [open_stream(pool.port, tokens.issue([channel], alice)[0]) for _ in range(3)]
    assert [c.status for c in held] == [200, 200, 200]
    assert leases(redis_server, alice) == 3

    extra = open_stream(pool.port, tokens.issue([channel], alice)[0])
    assert refused(extra, 429, "too_many_streams") == 3  # the lease: 3 heartbeats of 1 s
    other = open_stream(pool.port, tokens.issue([channel], bob)[0])
    anonymous = open_stream(pool.port, tokens.issue([channel])[0])
    assert (other.status, anonymous.status) == (200, 200)

    held.pop().close()
    wait_for(lambda: leases(redis_server, alice) == 2, 5, "the closed stream's lease released")
    again = open_stream(pool.port, tokens.issue([channel], alice)[0])
    assert again.status == 200
    for client in [*held, other, anonymous, again]:
        client.close()
    wait_for(lambda: leases(redis_server, alice) == 0, 5, "every lease released")


def test_leases_of_open_streams_are_renewed(make_pool, tokens, channel, redis_server, unique):
    pool = make_pool(max_streams_per_subject="2")  # heartbeat 1 s: a lease lasts 3 s
    subject = f"carol-{unique}"
    held = [open_stream(pool.port, tokens.issue([channel], subject)[0]) for _ in range(2)]
    time.sleep(4.5)  # on purpose: longer than a lease, only renewal keeps them counted
    assert leases(redis_server, subject) == 2
    refused(open_stream(pool.port, tokens.issue([channel], subject)[0]), 429, "too_many_streams")
    for client in held:
        client.close()


def test_a_killed_workers_leases_lapse(make_pool, tokens, channel, redis_server, unique):
    # kill -9 runs no cleanup: the streams' leases stay until they expire (3 heartbeats).
    pool = make_pool(max_streams_per_subject="2", heartbeat="2")
    subject = f"dave-{unique}"
    held = [open_stream(pool.port, tokens.issue([channel], subject)[0]) for _ in range(2)]
    [worker] = pool.worker_pids()
    os.kill(worker, signal.SIGKILL)
    killed = time.monotonic()
    for client in held:
        assert client.ended.wait(5)
    wait_for(lambda: pool.worker_pids() not in ([], [worker]), 15, "a new worker")
    wait_for(lambda: pool.health()["redis_connected"], 15, "the new worker to be ready")
    assert leases(redis_server, subject) == 2  # nobody released them
    refused(open_stream(pool.port, tokens.issue([channel], subject)[0]), 429, "too_many_streams")

    def admitted() -> StreamClient | None:
        client = open_stream(pool.port, tokens.issue([channel], subject)[0])
        if client.status == 200:
            return client
        client.close()
        return None

    client = wait_for(admitted, 15, "the dead worker's leases to lapse")
    lapsed_after = time.monotonic() - killed
    assert 3.0 <= lapsed_after <= 6.0 + 3.0, lapsed_after  # lease 6 s, polled
    client.close()


def test_a_graceful_restart_gives_leases_back_at_once(make_pool, tokens, channel, redis_server,
                                                      unique):
    pool = make_pool(max_streams_per_subject="2", heartbeat="5")  # leases would last 15 s
    subject = f"erin-{unique}"
    held = [open_stream(pool.port, tokens.issue([channel], subject)[0]) for _ in range(2)]
    [old] = pool.worker_pids()
    pool.signal(signal.SIGHUP)  # new workers; the old one ends its streams and exits
    for client in held:
        assert client.ended.wait(15)
    wait_for(lambda: leases(redis_server, subject) == 0, 5, "the leases released at exit")
    wait_for(lambda: old not in pool.worker_pids(), 15, "the old worker gone")
    again = [open_stream(pool.port, tokens.issue([channel], subject)[0]) for _ in range(2)]
    assert [c.status for c in again] == [200, 200]
    for client in again:
        client.close()


def test_per_worker_limit(make_pool, tokens, channel):
    pool = make_pool(max_streams_per_worker="5")
    token, _ = tokens.issue([channel])
    held = [open_stream(pool.port, token) for _ in range(5)]
    assert [c.status for c in held] == [200] * 5
    sixth = open_stream(pool.port, token)
    assert refused(sixth, 503, "server_busy") >= 1
    assert pool.health()["streams"] == 5
    held.pop().close()
    wait_for(lambda: pool.health()["streams"] == 4, 5, "the stream closed")
    again = open_stream(pool.port, token)
    assert again.status == 200
    for client in [*held, again]:
        client.close()
