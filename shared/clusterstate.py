"""Whether a Redis Cluster can take every publish right now, for the readiness probes.

A cluster client routes each command by slot, so the one-Redis question (``ROLE`` on a pooled
connection) has no node to go to. A node's ``CLUSTER INFO`` says what it knows of them all:
``cluster_state:ok`` and every slot served by a node that is not failing (``cluster_slots_ok``).
A shard whose primary died reads as not ready from the moment the nodes suspect it (``PFAIL``)
until its replica has taken over, which is when its channels cannot be published to.
"""

from __future__ import annotations

import redis
from redis.cluster import REDIS_CLUSTER_HASH_SLOTS
from redis.exceptions import RedisClusterException


def cluster_not_ready(cluster: object) -> str | None:
    """Why the cluster client ``cluster`` (shared/redisconn.py's LazyCluster, or redis-py's
    RedisCluster) cannot publish everywhere right now (a sentence), or None when it can. Asks
    the client's default node; a node that does not answer makes redis-py read the slot map
    again, so the next probe asks another."""
    try:
        info = cluster.cluster_info()  # type: ignore[attr-defined]
    except (redis.RedisError, RedisClusterException) as error:
        return f"no node of the Redis Cluster is answering ({type(error).__name__})."
    if not isinstance(info, dict) or info.get("cluster_state") != "ok":
        return "the Redis Cluster reports its state as failing: some slots have no primary."
    served = int(info.get("cluster_slots_ok", 0))
    if served < REDIS_CLUSTER_HASH_SLOTS:
        return (
            f"only {served} of the {REDIS_CLUSTER_HASH_SLOTS} slots of the Redis Cluster are "
            "served by a node that is up: a shard is failing over."
        )
    return None
