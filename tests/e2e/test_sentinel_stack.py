"""The stack in sentinel mode (``EVENTGATE_REDIS_MODE=sentinel``): supervisord runs three data
nodes and three sentinels beside the apps, the apps follow the primary through a
``redis+sentinel://`` URL, and a ``kill -9`` of the primary program really fails over (the node
wrapper holds the killed node down) while the stack keeps publishing and streaming."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest
import redis

from eventgate.shared.stackredis import SENTINEL_SERVICE
from eventgate.shared.tokens import ChannelTokens
from tests.clients import EventSourceClient
from tests.servers import LOOPBACK, wait_for

pytestmark = pytest.mark.stack(settings={
    "EVENTGATE_REDIS_MODE": "sentinel", "EVENTGATE_HEARTBEAT": "1", "EVENTGATE_RETRY_MS": "500",
})

PROGRAMS = ["nginx", "redis-1", "redis-2", "redis-3", "sentinel-1", "sentinel-2", "sentinel-3",
            "stream", "web"]


def node(port: int) -> redis.Redis:
    return redis.Redis(host=LOOPBACK, port=port, socket_timeout=2, decode_responses=True)


def primary_port(stack) -> int | None:
    """The primary every sentinel names, None while they disagree."""
    named = {int(node(port).sentinel_get_master_addr_by_name(SENTINEL_SERVICE)[1])
             for port in stack.stack_redis.sentinel_ports}
    return named.pop() if len(named) == 1 else None


def healthy_primary(stack) -> int | None:
    """The primary, once the sentinels agree on it, it is a primary, every other data node
    replicates from it with its link up, and every sentinel knows the two replicas (healthy) and
    the two other sentinels; else None. A sentinel finds replicas in the primary's INFO, every
    10 s: one it has not found yet would be left behind by a failover, following the old
    primary."""
    primary = primary_port(stack)
    if primary is None or node(primary).execute_command("ROLE")[0] != "master":
        return None
    for port in stack.stack_redis.sentinel_ports:
        sentinel = node(port)
        replicas = sentinel.sentinel_slaves(SENTINEL_SERVICE)
        if len(replicas) != 2 or any(r["is_sdown"] or r["is_odown"] for r in replicas):
            return None
        if int(sentinel.sentinel_master(SENTINEL_SERVICE)["num-other-sentinels"]) != 2:
            return None
    for port in stack.stack_redis.data_ports:
        info = node(port).info("replication")
        if port != primary and (info.get("master_port") != primary
                                or info.get("master_link_status") != "up"):
            return None
    return primary


def program_of(stack, port: int) -> str:
    return f"redis-{stack.stack_redis.data_ports.index(port) + 1}"


def running(stack) -> list[str]:
    lines = stack.supervisorctl("status").stdout.splitlines()
    return sorted(line.split()[0] for line in lines if " RUNNING " in line)


def opened_client(stack, channel: str) -> EventSourceClient:
    token, _ = ChannelTokens(stack.config.secret_keys).issue([channel])
    client = EventSourceClient(stack.port, token, (channel,)).start()
    wait_for(lambda: client.opened, 10, "the stream to open")
    return client


def test_every_program_runs_and_the_replicas_replicate(stack):
    wait_for(lambda: running(stack) == PROGRAMS, 15, "every program RUNNING")
    primary = wait_for(lambda: healthy_primary(stack), 20, "the sentinel set healthy")
    assert primary == stack.stack_redis.data_ports[0]  # redis-1 starts as the primary
    for port in stack.stack_redis.data_ports:
        assert node(port).config_get("maxmemory")["maxmemory"] == str(256 * 1024 * 1024)
        assert node(port).config_get("maxmemory-policy")["maxmemory-policy"] == "noeviction"


def test_an_event_published_through_the_web_app_reaches_a_stream(stack, channel):
    client = opened_client(stack, channel)
    try:
        status, _, body = stack.post("/api/events", {"channel": channel, "data": {"n": 0}})
        assert status == 201, body
        assert client.wait_data([{"n": 0}], timeout=10) == [{"n": 0}]
    finally:
        client.stop()


def test_a_killed_primary_fails_over_and_the_stack_keeps_going(stack, channel):
    old = wait_for(lambda: healthy_primary(stack), 20, "the sentinel set healthy")
    client = opened_client(stack, channel)
    try:
        status, _, body = stack.post("/api/events", {"channel": channel, "data": {"n": 0}})
        assert status == 201, body
        assert client.wait_data([{"n": 0}], timeout=10) == [{"n": 0}]

        name = program_of(stack, old)
        pid = int(stack.supervisorctl("pid", name).stdout)
        killed = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        new = stack.wait_until(
            lambda: primary_port(stack) not in (None, old) and primary_port(stack), 20,
            f"a failover away from {name}")
        failed_over = time.monotonic() - killed

        def published() -> bool:  # retried until confirmed; the key makes a retry safe
            status, _, _ = stack.post("/api/events", {"channel": channel, "data": {"n": 1}},
                                      headers={"Idempotency-Key": f"{channel}-1"})
            return status == 201

        stack.wait_until(published, 20, "a publish confirmed after the failover")
        confirmed = time.monotonic() - killed
        assert client.wait_data([{"n": 0}, {"n": 1}], timeout=20) == [{"n": 0}, {"n": 1}]
        delivered = time.monotonic() - killed

        # The killed node was held down (no restart hid the failover), then rejoined as a
        # replica of the new primary; every program runs again.
        stack.wait_until(lambda: healthy_primary(stack) == new, 40, f"{name} to rejoin")
        assert "crashed" in stack.log(name)
        assert node(old).execute_command("ROLE")[0] == "slave"
        wait_for(lambda: running(stack) == PROGRAMS, 15, "every program RUNNING again")
        print(f"\nkill -9 of {name}: new primary after {failed_over:.1f}s, publish confirmed "
              f"after {confirmed:.1f}s, delivered after {delivered:.1f}s, rejoined as a replica "
              f"after {time.monotonic() - killed:.1f}s")
    finally:
        client.stop()
    received = [json.loads(e.data) for e in client.events if e.type == "message"]
    assert received == [{"n": 0}, {"n": 1}]  # once each, in order


def test_a_restart_of_the_whole_stack_keeps_the_primary_the_sentinels_chose(stack):
    """After a failover, `make down; make up` must not bring the first primary back over the
    newer data: the nodes start in the roles the sentinels' files name (deploy/redisnode.py)."""
    primary = stack.wait_until(lambda: healthy_primary(stack), 20, "the sentinel set healthy")
    if primary == stack.stack_redis.data_ports[0]:  # no failover yet (this test run alone)
        node(stack.stack_redis.sentinel_ports[0]).execute_command(
            "SENTINEL", "FAILOVER", SENTINEL_SERVICE)
        primary = stack.wait_until(
            lambda: healthy_primary(stack) not in (None, stack.stack_redis.data_ports[0])
            and healthy_primary(stack), 30, "a failover away from redis-1")
    stack.stop()
    stack.start()
    roles = {port: node(port).execute_command("ROLE")[0] for port in stack.stack_redis.data_ports}
    assert [port for port, role in roles.items() if role == "master"] == [primary], roles
    assert stack.wait_until(lambda: healthy_primary(stack), 20, "healthy again") == primary
