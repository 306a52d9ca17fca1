"""The Redis Cluster harness (tests/rediscluster.py) does what the cluster tests rely on: every
shard answers through RedisCluster, shard channels deliver on the owning primary, a kill -9 fails
over and restore() brings the node back as a replica, a migrated slot's keys answer from the new
node, a half-migrated slot answers ASK, and CLIENT KILL TYPE pubsub ends shard subscribers.

It also pins the Redis 7.0 behaviours eventgate's shard subscriber is built on: the unsolicited
``sunsubscribe`` the subscribers of a slot's channels receive when the slot leaves their node, by
migration or graceful failover (RESP2 byte for byte; RESP3 as redis-py's push reply), and the
closed connection a killed primary's subscribers see.
"""

from __future__ import annotations

import secrets

import pytest
import redis
from redis.exceptions import AskError, MovedError

from tests.cluster.shardsub import closed, read_exactly, resp2, subscriber
from tests.servers import wait_for


def test_every_shard_answers_through_redis_cluster(redis_cluster):
    assert redis_cluster.url.count(",") == 5 and redis_cluster.url.startswith("redis+cluster://")
    primaries = redis_cluster.primaries()
    assert len(primaries) == 3 and len(redis_cluster.replicas()) == 3
    client = redis_cluster.cluster_client()
    try:
        for primary in primaries:
            key = redis_cluster.key_on(primary, "harness")
            value = secrets.token_hex(8)
            assert client.set(key, value)
            assert client.get(key) == value
            # The key lives on that primary itself, not merely somewhere the client found it.
            assert redis_cluster.client(primary).get(key) == value
            assert redis_cluster.primary_of_slot(redis_cluster.slot_of(key)) is primary
    finally:
        client.close()


def test_shard_channel_delivers_on_the_owning_primary_only(redis_cluster):
    channel = f"harness:{{{secrets.token_hex(4)}}}:live"
    owner = redis_cluster.primary_of_slot(redis_cluster.slot_of(channel))
    other = next(node for node in redis_cluster.primaries() if node is not owner)
    sock = subscriber(owner, channel)
    try:
        assert redis_cluster.client(owner).execute_command("SPUBLISH", channel, "hello") == 1
        expected = resp2(["smessage", channel, "hello"])
        assert read_exactly(sock, len(expected)) == expected
        with pytest.raises(MovedError) as moved:
            redis_cluster.client(other).execute_command("SPUBLISH", channel, "hello")
        assert moved.value.port == owner.port
    finally:
        sock.close()


def test_kill_primary_fails_over_to_its_replica_and_restore_rejoins_it(cluster_faults):
    cluster = cluster_faults
    victim = cluster.primaries()[0]
    replica = next(node for node in cluster.replicas()
                   if int(cluster.client(node).execute_command("ROLE")[2]) == victim.port)
    key = cluster.key_on(victim, "failover")
    cluster.client(victim).set(key, "kept")
    assert cluster.client(victim).execute_command("WAIT", 1, 5000) == 1
    channel = f"{key}:live"
    sock = subscriber(victim, channel)
    other = next(node for node in cluster.primaries() if node is not victim)
    other_key = cluster.key_on(other, "unaffected")
    try:
        assert cluster.kill_primary(victim) is victim
        assert closed(sock), "a killed primary's shard subscriber must see its connection end"
        # Once the victim is marked failed (and until its replica is promoted, about a second
        # on), the other shards keep taking writes: the set does not require full coverage.
        wait_for(lambda: "fail" in cluster.flags(victim, seen_by=other), 10,
                 "the victim marked failed")
        assert cluster.client(other).set(other_key, "still served")
        promoted = cluster.wait_failover(victim)
    finally:
        sock.close()
    assert promoted is replica
    assert cluster.primary_of_slot(cluster.slot_of(key)) is replica
    assert cluster.client(replica).get(key) == "kept"
    assert victim not in cluster.running()

    cluster.restore()  # checks that the victim came back as the replica of its replacement
    assert victim in cluster.replicas() and replica in cluster.primaries()
    print(f"\ncluster timings (s): {cluster.timings}")
    assert cluster.timings["failover"] < 10


def test_graceful_failover_unsubscribes_the_demoted_primarys_shard_subscribers(cluster_faults):
    cluster = cluster_faults
    replica = cluster.replicas()[0]
    role = cluster.client(replica).execute_command("ROLE")
    primary = next(node for node in cluster.primaries() if node.port == int(role[2]))
    channel = f"{cluster.key_on(primary, 'graceful')}:live"
    sock = subscriber(primary, channel)
    try:
        assert cluster.fail_over(replica) is primary
        # Like a migration: the slot left the node, its subscribers hear sunsubscribe and the
        # connection stays open (still usable, subscribed to nothing).
        expected = resp2(["sunsubscribe", channel, 0])
        assert read_exactly(sock, len(expected)) == expected
        sock.sendall(b"PING\r\n")
        assert read_exactly(sock, len(b"+PONG\r\n")) == b"+PONG\r\n"
    finally:
        sock.close()
    assert cluster.primary_of_slot(cluster.slot_of(channel)) is replica
    assert primary in cluster.replicas()


def test_migrated_slot_answers_from_the_new_node_and_unsubscribes(cluster_faults):
    cluster = cluster_faults
    source = cluster.primaries()[0]
    target = cluster.primaries()[1]
    key = cluster.key_on(source, "migrate")
    slot = cluster.slot_of(key)
    cluster.client(source).rpush(key, "a", "b", "c")
    neighbours = [f"{key}:{number}" for number in range(150)]  # more than one MIGRATE batch
    cluster.client(source).mset({name: name for name in neighbours})
    channel = f"{key}:live"
    raw = subscriber(source, channel)
    resp3 = redis.Connection(host=source.host, port=source.port, protocol=3)
    resp3.connect()
    resp3.send_command("SSUBSCRIBE", channel)
    assert resp3.read_response(push_request=True) == [b"ssubscribe", channel.encode(), 1]
    try:
        cluster.migrate_slot(slot, target)
        # Redis drops the slot's shard subscriptions on the node that lost it: an unsolicited
        # sunsubscribe with the client's remaining count, the connection left open.
        expected = resp2(["sunsubscribe", channel, 0])
        raw.settimeout(5)
        assert read_exactly(raw, len(expected)) == expected
        assert resp3.read_response(push_request=True, timeout=5) == [
            b"sunsubscribe", channel.encode(), 0]
        resp3.send_command("PING")
        assert resp3.read_response() == b"PONG"
    finally:
        raw.close()
        resp3.disconnect()
    assert cluster.primary_of_slot(slot) is target
    assert cluster.client(target).lrange(key, 0, -1) == ["a", "b", "c"]
    assert cluster.client(target).mget(neighbours) == neighbours
    with pytest.raises(MovedError) as moved:
        cluster.client(source).get(key)
    assert (moved.value.slot_id, moved.value.port) == (slot, target.port)
    client = cluster.cluster_client()
    try:
        assert client.lrange(key, 0, -1) == ["a", "b", "c"]
    finally:
        client.close()


def test_half_migrated_slot_answers_ask_and_finishes(cluster_faults):
    cluster = cluster_faults
    source = cluster.primaries()[0]
    target = cluster.primaries()[2]
    base = cluster.key_on(source, "ask")
    moved_key, staying_key = f"{base}:1", f"{base}:2"
    cluster.client(source).set(moved_key, "one")
    cluster.client(source).set(staying_key, "two")
    channel = f"{base}:live"
    migration = cluster.begin_migration(cluster.slot_of(base), target)
    assert cluster.move_keys(migration, limit=1) == 1
    [staying] = cluster.client(source).execute_command(
        "CLUSTER", "GETKEYSINSLOT", migration.slot, 10)
    [moved] = {moved_key, staying_key} - {staying}
    with pytest.raises(AskError) as asked:
        cluster.client(source).get(moved)
    assert (asked.value.slot_id, asked.value.port) == (migration.slot, target.port)
    assert cluster.client(source).get(staying) in {"one", "two"}
    # A shard channel is no key: while its slot is MIGRATING, SPUBLISH still runs on the source.
    assert cluster.client(source).execute_command("SPUBLISH", channel, "x") == 0
    client = cluster.cluster_client()
    try:
        assert client.get(moved) in {"one", "two"}  # RedisCluster follows the ASK
    finally:
        client.close()
    cluster.finish_migration(migration)
    assert cluster.primary_of_slot(migration.slot) is target
    assert cluster.client(target).mget([moved_key, staying_key]) == ["one", "two"]
    assert not cluster.migrations


def test_kill_pubsub_ends_shard_subscribers_only(redis_cluster):
    channel = f"harness:{{{secrets.token_hex(4)}}}:live"
    owner = redis_cluster.primary_of_slot(redis_cluster.slot_of(channel))
    socks = [subscriber(owner, channel), subscriber(owner, f"{channel}:2")]
    plain = redis_cluster.client(owner)
    plain.ping()
    try:
        assert redis_cluster.kill_pubsub(owner) == 2
        assert all(closed(sock) for sock in socks)
        assert plain.ping()
        wait_for(lambda: redis_cluster.client(owner).execute_command(
            "PUBSUB", "SHARDNUMSUB", channel) == [channel, 0], 5, "the subscriptions gone")
    finally:
        for sock in socks:
            sock.close()
