"""The stream tier on a real Redis Cluster: numbered rounds on 200 channels spread over every
shard, followed by single- and multi-channel clients (a client's channels on different shards),
through a stream pool of two workers that holds one sharded pub/sub connection per shard per
worker — then the same while the cluster is faulted: a primary killed (failover), a slot
migrated, the pub/sub connections of a shard killed. Each client ends with every event the log
kept once, in order, or the loss event for what Redis itself lost (tests/ha/verdict.py). And a
revocation: each worker follows the control channel over one plain SUBSCRIBE on any node."""

from __future__ import annotations

import json
import secrets
import time
from collections import Counter

import pytest

from eventgate.shared import keys
from tests.clients import StreamClient, stream_path
from tests.cluster.traffic import RoundPublisher, follow, judge
from tests.ha.verdict import Verdict
from tests.servers import wait_for

CHANNELS = 200
#: Rounds a second (each a batch of one event on every channel).
RATE = 5.0


def traffic(cluster_apps, tokens, publish_key, base, channels=None):
    stream, web = cluster_apps
    channels = channels or [f"{base}.{n}" for n in range(CHANNELS)]
    clients = follow(stream.port, tokens, channels)
    publisher = RoundPublisher(web.port, publish_key, channels, RATE).start()
    return clients, publisher


def stop(clients, publisher) -> None:
    publisher.stop()
    for client in clients.values():
        client.stop()


def finish(redis_cluster, clients, publisher) -> Verdict:
    """Stop publishing, wait for every client to catch up, judge, stop the clients."""
    try:
        publisher.stop()
        return judge(redis_cluster, clients, publisher)
    finally:
        stop(clients, publisher)


def pubsub_connections(redis_cluster) -> dict[str, Counter]:
    """Per primary, the stream workers' pub/sub connections by client name."""
    out = {}
    for node in redis_cluster.primaries():
        listed = redis_cluster.client(node).client_list(_type="pubsub")
        out[f"{node.port}"] = Counter(c["name"] for c in listed
                                      if c["name"].startswith("eventgate-stream-"))
    return out


def test_every_round_arrives_in_order_over_one_connection_per_shard_per_worker(
    redis_cluster, cluster_apps, tokens, publish_key
):
    # Channel names spread over more than 100 of the partitions, so over every shard: one base
    # in about 40 falls short by chance (the names' CRCs), so the test picks one that does not.
    stamp = time.monotonic_ns()
    base = next(
        candidate for candidate in (f"c{stamp}x{n}" for n in range(1000))
        if len({keys.partition(f"{candidate}.{n}") for n in range(CHANNELS)}) > 100
    )
    clients, publisher = traffic(cluster_apps, tokens, publish_key, base)
    try:
        publisher.wait_rounds(10)
        connections = pubsub_connections(redis_cluster)
    finally:
        verdict = finish(redis_cluster, clients, publisher)
    workers = cluster_apps[0].worker_pids()
    for port, names in connections.items():
        # Every worker follows channels on every shard; one connection each, however many
        # clients and channels.
        assert set(names) == {f"eventgate-stream-{pid}" for pid in workers}, (port, names)
        assert set(names.values()) == {1}, (port, names)
    assert not verdict.problems, verdict.problems[:10]
    assert publisher.rounds >= 10


def test_a_reconnect_costs_one_command_per_partition_not_per_channel(
    redis_cluster, cluster_apps, tokens, publish_key, cluster_faults
):
    base = f"r{time.monotonic_ns()}"
    # 200 channels in 8 partitions: many channels per partition, as a busy worker has.
    names = (f"{base}.{n}" for n in range(100_000))
    channels = [name for name in names if keys.partition(name) < 8][:CHANNELS]
    clients, publisher = traffic(cluster_apps, tokens, publish_key, base, channels)
    try:
        publisher.wait_rounds(3)
        node = redis_cluster.primary_of_slot(redis_cluster.slot_of(keys.log_key(channels[0])))
        held = [name for name in channels
                if redis_cluster.primary_of_slot(redis_cluster.slot_of(keys.log_key(name)))
                .port == node.port]
        partitions = len({keys.partition(name) for name in held})
        before = redis_cluster.client(node).info("commandstats")
        assert redis_cluster.kill_pubsub(node) >= 1
        workers = len(cluster_apps[0].worker_pids())
        wait_for(lambda: len(pubsub_connections(redis_cluster)[str(node.port)]) == workers, 10,
                 "the workers to reconnect")
        publisher.wait_rounds(publisher.rounds + 3)
        after = redis_cluster.client(node).info("commandstats")
    finally:
        verdict = finish(redis_cluster, clients, publisher)

    def calls(stats, command: str) -> int:
        return stats.get(f"cmdstat_{command}", {}).get("calls", 0)

    print(f"\n{len(held)} channels in {partitions} partitions on the shard: "
          f"ssubscribe {calls(after, 'ssubscribe') - calls(before, 'ssubscribe')}, "
          f"xread {calls(after, 'xread') - calls(before, 'xread')}")
    # Each worker resubscribes with one SSUBSCRIBE per partition and asks which logs moved on
    # with one XREAD per partition: not one command per channel.
    assert calls(after, "ssubscribe") - calls(before, "ssubscribe") <= workers * partitions
    assert calls(after, "xread") - calls(before, "xread") <= 2 * workers * partitions
    assert len(held) > 2 * partitions  # the bound above would not tell them apart otherwise
    assert not verdict.problems, verdict.problems[:10]


def control_connections(redis_cluster, wanted: list[str]) -> list[str]:
    """The names in ``wanted`` of control connections, over every running node: a worker picks
    any node, a replica too (a cluster forwards PUBLISH to every node's subscribers)."""
    names = []
    for node in redis_cluster.running():
        listed = redis_cluster.client(node).client_list(_type="pubsub")
        names += [c["name"] for c in listed if c["name"] in wanted]
    return names


def test_a_revocation_ends_the_subjects_streams_on_every_worker(
    redis_cluster, cluster_apps, cluster_app, tokens, publish_key
):
    pool = cluster_apps[0]
    expected = sorted(f"eventgate-control-{pid}" for pid in pool.worker_pids())
    wait_for(lambda: sorted(control_connections(redis_cluster, expected)) == expected, 10,
             "one control connection per worker")
    subject = f"user-{secrets.token_hex(4)}"
    channel = f"revoke.{secrets.token_hex(4)}"
    token, _ = tokens.issue([channel], subject)
    streams = [StreamClient(pool.port, stream_path(token)).start().wait_open() for _ in range(6)]

    answer = cluster_app.test_client().post(
        "/api/revocations", json={"subject": subject},
        headers={"Authorization": f"Bearer {publish_key}"},
    )
    sent = time.monotonic()
    assert answer.status_code == 201, answer.get_json()

    for client in streams:
        assert client.ended.wait(max(0.0, sent + 1.0 - time.monotonic()) + 0.05)
        last = client.events[-1]
        assert (last.type, json.loads(last.data)) == ("eventgate.revoked", {"subject": subject})
    again = StreamClient(pool.port, stream_path(token)).start()
    assert again.status == 401 and again.json()["error"] == "token_revoked"


def kill_primary(cluster, base):
    node = cluster.primary_of_slot(cluster.slot_of(keys.log_key(f"{base}.0")))
    cluster.wait_failover(cluster.kill_primary(node))


def migrate_slot(cluster, base):
    slot = cluster.slot_of(keys.log_key(f"{base}.0"))
    owner = cluster.primary_of_slot(slot)
    target = next(node for node in cluster.primaries() if node.port != owner.port)
    cluster.migrate_slot(slot, target)


def kill_pubsub(cluster, base):
    node = cluster.primary_of_slot(cluster.slot_of(keys.log_key(f"{base}.0")))
    assert cluster.kill_pubsub(node) >= 1


@pytest.mark.parametrize("fault", [kill_primary, migrate_slot, kill_pubsub],
                         ids=lambda f: f.__name__)
def test_every_client_ends_with_every_kept_event_through_a_fault(
    redis_cluster, cluster_apps, tokens, publish_key, cluster_faults, fault
):
    base = f"f{time.monotonic_ns()}"
    clients, publisher = traffic(cluster_apps, tokens, publish_key, base)
    try:
        publisher.wait_rounds(5)
        fault(redis_cluster, base)
        publisher.wait_rounds(publisher.rounds + 10, timeout=40)
    finally:
        verdict = finish(redis_cluster, clients, publisher)
    print(f"\n{fault.__name__}: {publisher.rounds} rounds, statuses {dict(publisher.statuses)}, "
          f"{verdict.figures.get('lost_seen')}")
    assert not verdict.problems, verdict.problems[:10]
