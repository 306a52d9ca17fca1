"""Helpers for the publishing tests on the session's Redis Cluster: which node holds a
channel, channels spread over every shard, a channel's log as its node holds it."""

from __future__ import annotations

import uuid

import redis

from eventgate.shared import keys
from eventgate.shared.publisher import Publisher
from tests.servers import LOOPBACK

SHARDS = 3


def node_port(publisher: Publisher, channel: str) -> int:
    """The port of the primary serving ``channel``, as ``publisher``'s slot map says."""
    return publisher.client.get_node_from_key(keys.log_key(channel)).port


def node_at(port: int) -> redis.Redis:
    """A plain client of the node on ``port`` (no redirect followed; answers as bytes)."""
    return redis.Redis(host=LOOPBACK, port=port, socket_timeout=5)


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


def log_of(publisher: Publisher, channel: str) -> list[tuple[str, dict]]:
    """``channel``'s log on the primary serving it: [(id, {field: value})], oldest first."""
    return [
        (entry_id.decode(), {k.decode(): v.decode() for k, v in fields.items()})
        for entry_id, fields in node_at(node_port(publisher, channel)).xrange(
            keys.log_key(channel))
    ]


def datas(publisher: Publisher, channel: str) -> list[str]:
    """The ``data`` of every event in ``channel``'s log, oldest first."""
    return [fields["data"] for _, fields in log_of(publisher, channel)]
