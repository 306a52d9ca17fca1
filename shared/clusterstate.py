"""Whether a Redis Cluster can take every publish right now, for the readiness probes.

A cluster client routes each command by slot, so the one-Redis question (``ROLE`` on a pooled
connection) has no node to go to. Each primary of the client's slot map is asked ``CLUSTER
INFO`` instead: every one must answer (a publish to a primary that does not is lost to its
slots), and say ``cluster_state:ok`` with every slot served by a node that is not failing
(``cluster_slots_ok``). A shard whose primary died reads as not ready from that moment, through
the nodes' suspicion (``PFAIL``) and verdict (``FAIL``), until its replica has taken over and
the slot map is read again — which a probe that met a silent primary asks for.
"""

from __future__ import annotations

import contextlib

import redis
from redis.cluster import REDIS_CLUSTER_HASH_SLOTS
from redis.exceptions import RedisClusterException


def cluster_not_ready(cluster: object) -> str | None:
    """Why the cluster client ``cluster`` (shared/redisconn.py's LazyCluster, or redis-py's
    RedisCluster) cannot publish everywhere right now (a sentence), or None when it can."""
    try:
        primaries = cluster.get_primaries()  # type: ignore[attr-defined]
    except (redis.RedisError, RedisClusterException) as error:
        return f"no node of the Redis Cluster is answering ({type(error).__name__})."
    infos, silent = [], []
    for node in primaries:
        try:
            node_client = cluster.get_redis_connection(node)  # type: ignore[attr-defined]
            infos.append(node_client.execute_command("CLUSTER INFO"))
        except redis.RedisError as error:
            silent.append(f"{node.name} ({type(error).__name__})")
    if silent:
        # A primary gone, or replaced: read the slot map again for the next probe.
        with contextlib.suppress(redis.RedisError, RedisClusterException):
            cluster.nodes_manager.initialize()  # type: ignore[attr-defined]
        if not infos:
            return f"no node of the Redis Cluster is answering ({', '.join(silent)})."
        return (
            f"a primary of the Redis Cluster is not answering: {', '.join(silent)}; its slots "
            "cannot be published to until its replica takes over."
        )
    if any(not isinstance(info, dict) or info.get("cluster_state") != "ok" for info in infos):
        return "the Redis Cluster reports its state as failing: some slots have no primary."
    served = min(int(info.get("cluster_slots_ok", 0)) for info in infos)
    if served < REDIS_CLUSTER_HASH_SLOTS:
        return (
            f"only {served} of the {REDIS_CLUSTER_HASH_SLOTS} slots of the Redis Cluster are "
            "served by a node that is up: a shard is failing over."
        )
    return None
