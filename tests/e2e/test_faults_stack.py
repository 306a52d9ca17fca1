"""Faults on the deployed stack (supervisord, nginx, both gunicorn pools, redis with AOF):
browser-like clients reconnect through nginx and end with exactly the whole sequence."""

from __future__ import annotations

import json
import time

from eventgate.shared.publisher import Publisher
from eventgate.shared.redisconn import connect
from eventgate.shared.tokens import ChannelTokens
from tests.sequences import assert_sequences, connect_clients
from tests.servers import wait_for
from tests.stack import http_get
from tests.stream.paced import PacedPublisher

SETTINGS = {"EVENTGATE_HEARTBEAT": "1", "EVENTGATE_RETRY_MS": "500"}


def clients_for(stack, channels):
    return connect_clients(stack.port, ChannelTokens(stack.config.secret_keys), channels)


def run_fault(stack, channel, fault, total=300, rate=100):
    channels = [channel, f"{channel}.b"]
    clients = clients_for(stack, channels)
    publisher = Publisher(connect(stack.config), stack.config)
    paced = PacedPublisher(publisher, channels, total=total, rate=rate).start()
    paced.wait_count(total // 4)  # mid-stream
    fault()
    assert_sequences(clients, paced, channels)
    return clients, paced


def test_supervisorctl_restart_stream(make_stack, channel):
    stack = make_stack(stream_workers=2, settings=SETTINGS)
    clients, _ = run_fault(
        stack, channel, lambda: stack.supervisorctl("restart", "stream"), total=400
    )
    assert all(c.connections >= 2 for c in clients)
    assert_no_stream_errors(stack)


def test_hup_of_the_stream_program(make_stack, channel):
    stack = make_stack(stream_workers=2, settings=SETTINGS)
    clients, _ = run_fault(stack, channel, lambda: stack.supervisorctl("signal", "HUP", "stream"))
    assert all(c.connections >= 2 for c in clients)
    assert_no_stream_errors(stack)


def test_redis_restart_under_supervisor(make_stack, channel):
    stack = make_stack(stream_workers=1, settings=SETTINGS)
    _, paced = run_fault(stack, channel, lambda: stack.supervisorctl("restart", "redis"))
    assert paced.failures > 0


def test_readiness_and_publishing_while_redis_is_down(make_stack, channel):
    stack = make_stack(stream_workers=1, settings=SETTINGS)
    clients = clients_for(stack, [channel])
    assert http_get(stack.url("/readyz"))[0] == 200
    assert http_get(stack.url("/streams/readyz"))[0] == 200
    stack.supervisorctl("stop", "redis")
    wait_for(lambda: http_get(stack.url("/streams/readyz"))[0] == 503, 10, "stream readyz 503")
    assert http_get(stack.url("/readyz"))[0] == 503
    started = time.monotonic()
    status, _, body = stack.post("/api/events", {"channel": channel, "data": 1})
    assert time.monotonic() - started < 1.0
    assert status == 503 and json.loads(body)["error"] == "publish_failed"
    beats_before = clients[0].current.raw.count(b": hb\n\n")
    wait_for(lambda: clients[0].current.raw.count(b": hb\n\n") > beats_before, 2.5,
             "a heartbeat while Redis is down (streams stay open)")
    connections = [c.connections for c in clients]
    stack.supervisorctl("start", "redis")
    wait_for(lambda: http_get(stack.url("/streams/readyz"))[0] == 200, 15, "stream readyz 200")
    assert http_get(stack.url("/readyz"))[0] == 200
    status, _, body = stack.post("/api/events", {"channel": channel, "data": {"n": 0}})
    assert status == 201, body
    for client in clients:
        assert client.wait_data([{"n": 0}], timeout=10) == [{"n": 0}]
    assert [c.connections for c in clients] == connections  # no reconnect was needed
    for client in clients:
        client.stop()


def assert_no_stream_errors(stack) -> None:
    """No stream request was answered 5xx by nginx (the pool's absence is a 200 + retry)."""
    streams = [line for line in stack.log("nginx-access").splitlines() if "GET /streams " in line]
    assert streams
    assert not [line for line in streams if '" 50' in line], streams


