"""Helpers for the cluster tests: which node holds a channel, channels spread over every
shard, a channel's log as a node holds it, a slot migrated by hand."""

from __future__ import annotations

import uuid

import redis

from eventgate.shared import keys
from eventgate.shared.publisher import Publisher
from tests.servers import LOOPBACK, wait_for

SHARDS = 3


def node_port(publisher: Publisher, channel: str) -> int:
    return publisher.client.get_node_from_key(keys.log_key(channel)).port


def channels_by_shard(publisher: Publisher, per_shard: int) -> dict[int, list[str]]:
    """``per_shard`` fresh channels owned by each primary: {port: [channel, …]}, each channel of
    a partition of its own."""
    found: dict[int, list[str]] = {}
    partitions: set[int] = set()
    run = uuid.uuid4().hex[:8]
    for number in range(10_000):
        channel = f"cl.{run}.{number}"
        if keys.partition(channel) in partitions:
            continue
        bucket = found.setdefault(node_port(publisher, channel), [])
        if len(bucket) < per_shard:
            bucket.append(channel)
            partitions.add(keys.partition(channel))
        if len(found) == SHARDS and all(len(b) == per_shard for b in found.values()):
            return found
    raise AssertionError("no channels on every shard")


def interleaved(by_shard: dict[int, list[str]]) -> list[str]:
    """One channel of each shard in turn, then the same again: a batch whose parts interleave."""
    columns = list(zip(*by_shard.values(), strict=True))
    once = [channel for column in columns for channel in column]
    return once + once


def log_of(redis_cluster, publisher: Publisher, channel: str) -> list[tuple[str, dict]]:
    node = redis_cluster.node(node_port(publisher, channel))
    return [
        (entry_id.decode(), {k.decode(): v.decode() for k, v in fields.items()})
        for entry_id, fields in node.xrange(keys.log_key(channel))
    ]


def move_slot(redis_cluster, slot: int, source: int, target: int) -> None:
    """Migrate ``slot`` with its keys from the primary on ``source`` to the one on ``target``."""
    start_migration(redis_cluster, slot, source, target)
    end_migration(redis_cluster, slot, target)


def start_migration(redis_cluster, slot: int, source: int, target: int) -> None:
    """Mark ``slot`` migrating from ``source`` to ``target`` and move its keys: until
    ``end_migration`` the source answers ASK for it."""
    src, dst = redis_cluster.node(source), redis_cluster.node(target)
    dst.execute_command("CLUSTER SETSLOT", slot, "IMPORTING", _node_id(src))
    src.execute_command("CLUSTER SETSLOT", slot, "MIGRATING", _node_id(dst))
    while names := src.execute_command("CLUSTER GETKEYSINSLOT", slot, 100):
        src.execute_command("MIGRATE", LOOPBACK, target, "", 0, 5000, "KEYS", *names)


def end_migration(redis_cluster, slot: int, target: int) -> None:
    """Give ``slot`` to ``target`` on every primary; wait until every node agrees."""
    owner = _node_id(redis_cluster.node(target))
    for port in redis_cluster.primaries():
        redis_cluster.node(port).execute_command("CLUSTER SETSLOT", slot, "NODE", owner)
    wait_for(
        lambda: all(_owner(redis_cluster.node(port), slot) == owner
                    for port in redis_cluster.ports),
        10, f"every node to see slot {slot} on {target}",
    )


def _node_id(node: redis.Redis) -> str:
    return node.cluster("myid").decode()


def _owner(node: redis.Redis, slot: int) -> str | None:
    for start, end, primary, *_ in node.execute_command("CLUSTER SLOTS"):
        if start <= slot <= end:
            return primary[2].decode()
    return None
