"""Bounded Redis memory (issue 13 part 5), on private redis-servers: the logs of channels that
fall silent expire after the age limit and Redis' memory returns to its baseline; a full Redis
(maxmemory, noeviction) refuses publishes with RedisFull while streams are still served."""

from __future__ import annotations

import json

import pytest

from eventgate.shared import keys
from eventgate.shared.errors import RedisFull
from eventgate.shared.publisher import Publisher
from eventgate.stream.resume import Resume
from tests.fullredis import SMALL_REDIS, fill_up
from tests.servers import wait_for

CHANNELS = 100_000
BATCH = 1000
#: Left over once every log expired: allocator and bookkeeping noise, not a log's worth.
MARGIN_BYTES = 1 << 20


def used(client, field: str = "used_memory") -> int:
    return client.info("memory")[field]


def test_the_logs_of_silent_channels_expire_and_memory_returns_to_its_baseline(
    make_redis_server, built
):
    server = make_redis_server("--appendonly", "no")
    client = server.client()
    publisher = Publisher.from_url(server.url, retention_seconds=2, max_batch_events=BATCH)
    built(publisher)
    publisher.publish("warm.up", 1)  # the script loaded, the connection open
    wait_for(lambda: client.dbsize() == 0, 10, "the warm-up log to expire")
    baseline = used(client)

    for start in range(0, CHANNELS, BATCH):
        publisher.publish_many(
            [publisher.draft(f"user.{n}", {"n": n}) for n in range(start, start + BATCH)]
        )
    peak = used(client, "used_memory_peak")

    wait_for(lambda: client.dbsize() == 0, 20, "every log to expire")
    wait_for(lambda: used(client) < baseline + MARGIN_BYTES, 20,
             f"memory back within {MARGIN_BYTES} bytes of its baseline {baseline}")
    print(f"\nused_memory: baseline {baseline}, peak {peak}, after expiry {used(client)}")
    assert peak > baseline + 20 * MARGIN_BYTES  # the logs did take memory


def test_a_full_redis_refuses_publishes_and_still_serves_streams(
    make_redis_server, built, hub, resume, make_subscriber
):
    server = make_redis_server(*SMALL_REDIS)
    client = server.client()
    publisher = Publisher.from_url(server.url)
    built(publisher)
    ids = [publisher.publish("orders.1", {"n": n}, "t") for n in (1, 2)]
    fill_up(client)

    for durable in (0, 1):  # the script alone, and the script pipelined with WAIT
        refusing = Publisher.from_url(server.url, durable_replicas=durable)
        built(refusing)
        with pytest.raises(RedisFull) as refused:
            refusing.publish("orders.1", 3)
        assert refused.value.code == "redis_full" and refused.value.status == 503
    assert client.xlen(keys.log_key("orders.1")) == 2  # nothing stored

    full = Resume(hub, resume.broker, client)
    subscriber, peer = make_subscriber(["orders.1"])
    subscriber.positions["orders.1"] = ids[0]
    full.replay(subscriber, "orders.1")
    assert [json.loads(e.data)["n"] for e in peer.until(1)] == [2]
