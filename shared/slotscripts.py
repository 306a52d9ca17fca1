"""Running one Lua script per hash slot under Redis Cluster: each call on the primary that owns
its slot, the calls of one node in one pipeline, with ``WAIT`` at the end of that pipeline when
the caller needs replicas to confirm; every node's pipeline is sent before any answer is read
(one round trip for the batch, not one per node or per call).

redis-py's cluster client would route each EVALSHA itself, but it cannot put ``WAIT`` on the
connection that ran the script (WAIT counts the replicas holding what *its own* connection
wrote), and its ClusterPipeline sends a command again after a connection error or a timeout —
a script that may have run (its reply lost) would then store its events twice. So the
pipelines are made here, on the node's own pool, and only the answers that prove the script did
not run are retried:

- ``MOVED``: the slot lives elsewhere now (a failover, a migration finished). The slot map is
  read again, and the call goes to the new owner.
- ``ASK``: the slot is migrating and the keys are on the target already (or not yet anywhere):
  the call goes to the target node once, preceded by ``ASKING``.
- ``NOSCRIPT``: a node that never saw the script (a replica just promoted, a node added); it is
  loaded there and the call repeated.
- ``TRYAGAIN``: a migrating slot holds some of the call's keys on each side; tried again after a
  moment. The publish script always names a key that does not exist (its live channel, a shard
  channel declared in KEYS), and Redis runs no multi-key command whose keys are not all there
  in a slot being migrated (``ASK`` from the source, then ``TRYAGAIN`` from the target even
  after ``ASKING``): a partition whose slot is moving cannot be published to until the
  migration ends (``CLUSTER SETSLOT … NODE``). Those publishes fail, storing nothing, after
  ``ATTEMPTS`` tries; a retry with the same idempotency key is safe.

A connection error or timeout is raised (the script may have run) after asking the cluster for
its slot map again, so that the caller's retry goes where the slot is now.

redis-py's own Pipeline is not used for the node's commands either: it reads one node's answers
before the next node is sent anything.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass

import redis
from redis.cluster import ClusterNode
from redis.exceptions import (
    AskError,
    MaxConnectionsError,
    MovedError,
    NoScriptError,
    RedisClusterException,
    TryAgainError,
)

#: How many times a call answered MOVED, ASK, NOSCRIPT or TRYAGAIN is sent again.
ATTEMPTS = 5
#: The pause before sending again calls that answered TRYAGAIN (a slot in mid-migration).
TRYAGAIN_SECONDS = 0.05


@dataclass(frozen=True)
class SlotCall:
    """One script run: its KEYS (all of one hash slot) and ARGV."""

    keys: Sequence[str]
    args: Sequence[str | int]


def run_per_slot(
    cluster: redis.cluster.RedisCluster,
    script: str,
    sha: str,
    calls: Sequence[SlotCall],
    wait: tuple[int, int] | None = None,
) -> tuple[list[object], int]:
    """Run ``script`` (whose SHA1 is ``sha``) once per call; returns the replies in the calls'
    order and, with ``wait`` = (replicas, milliseconds), the fewest replicas that any node's
    ``WAIT`` counted (0 without ``wait``). Nodes are asked one after another, in the order of
    their first call; a node's calls run in the calls' order.

    Raises a RedisError for every failure — the first error a call answered (its node's later
    calls may have run; no node after it was asked), a connection error, a slot no node serves —
    with the calls answered so far already stored."""
    try:
        return _run(cluster, script, sha, calls, wait)
    except RedisClusterException as error:  # a slot no node serves: not a RedisError
        raise redis.exceptions.ClusterError(str(error)) from error


def _run(
    cluster: redis.cluster.RedisCluster,
    script: str,
    sha: str,
    calls: Sequence[SlotCall],
    wait: tuple[int, int] | None,
) -> tuple[list[object], int]:
    replies: list[object] = [None] * len(calls)
    replicas: int | None = None
    pending = list(range(len(calls)))
    asking: dict[int, ClusterNode] = {}
    for _attempt in range(ATTEMPTS):
        moved, tryagain = False, False
        missing: list[ClusterNode] = []
        retry: list[int] = []
        exchanged = _exchange(cluster, sha, calls, pending, asking, wait)
        for node, indexes, answers, counted in exchanged:
            ran = False
            for index, answer in zip(indexes, answers, strict=True):
                asking.pop(index, None)
                if isinstance(answer, MovedError):
                    moved = True
                elif isinstance(answer, AskError):
                    target = cluster.nodes_manager.get_node(answer.host, answer.port)
                    if target is None:
                        moved = True  # a node we do not know yet: read the map first
                    else:
                        asking[index] = target
                elif isinstance(answer, NoScriptError):
                    missing.append(node)
                elif isinstance(answer, TryAgainError):
                    tryagain = True
                elif isinstance(answer, Exception):
                    raise answer
                else:
                    replies[index], ran = answer, True
                    continue
                retry.append(index)
            if wait is not None and ran:
                if isinstance(counted, Exception):
                    raise counted
                replicas = int(counted) if replicas is None else min(replicas, int(counted))
        if not retry:
            return replies, replicas or 0
        pending = retry
        if moved:
            cluster.nodes_manager.initialize()
        for node in dict.fromkeys(missing):
            cluster.get_redis_connection(node).script_load(script)
        if tryagain:
            time.sleep(TRYAGAIN_SECONDS)
    raise redis.exceptions.ClusterError(
        f"the cluster kept redirecting a script after {ATTEMPTS} attempts (slots moving)."
    )


def _exchange(
    cluster: redis.cluster.RedisCluster,
    sha: str,
    calls: Sequence[SlotCall],
    pending: list[int],
    asking: dict[int, ClusterNode],
    wait: tuple[int, int] | None,
) -> list[tuple[ClusterNode, list[int], list[object], object]]:
    """Send every node its calls (each after ASKING when redirected so), then WAIT, all nodes
    before reading any answer, so that a batch over three shards costs about one round trip,
    not three. Per node: the node, its calls' indexes, their answers (an exception for an error
    reply) and WAIT's answer (None without ``wait``)."""
    nodes: dict[ClusterNode, list[int]] = {}
    for index in pending:
        node = asking.get(index) or cluster.get_node_from_key(calls[index].keys[0])
        nodes.setdefault(node, []).append(index)
    sent: list[tuple[ClusterNode, list[int], redis.Redis, object, list[tuple]]] = []
    read = 0
    try:
        for node, indexes in nodes.items():
            client = cluster.get_redis_connection(node)
            connection = client.connection_pool.get_connection()
            commands = _commands(sha, calls, indexes, asking, wait)
            sent.append((node, indexes, client, connection, commands))
            connection.send_packed_command(connection.pack_commands(commands))
        exchanged = []
        for node, indexes, client, connection, commands in sent:
            answers = [_answer(client, connection, command[0]) for command in commands]
            read += 1
            counted = answers[-1] if wait is not None else None
            scripts = [a for c, a in zip(commands, answers, strict=True) if c[0] == "EVALSHA"]
            exchanged.append((node, indexes, scripts, counted))
        return exchanged
    except MaxConnectionsError:
        raise  # our pool is busy, not the node gone: the map stands
    except (redis.ConnectionError, redis.TimeoutError):
        _forget_map(cluster)
        raise
    finally:
        for number, (_, _, client, connection, _) in enumerate(sent):
            if number >= read:
                connection.disconnect()  # answers left unread: never hand the socket on
            client.connection_pool.release(connection)


def _commands(
    sha: str,
    calls: Sequence[SlotCall],
    indexes: list[int],
    asking: dict[int, ClusterNode],
    wait: tuple[int, int] | None,
) -> list[tuple]:
    commands: list[tuple] = []
    for index in indexes:
        if index in asking:
            commands.append(("ASKING",))
        call = calls[index]
        commands.append(("EVALSHA", sha, len(call.keys), *call.keys, *call.args))
    if wait is not None:
        commands.append(("WAIT", *wait))
    return commands


def _answer(client: redis.Redis, connection: object, command: str) -> object:
    """One reply; an error reply as its exception (as a pipeline with raise_on_error=False)."""
    try:
        return client.parse_response(connection, command)
    except redis.ResponseError as error:
        return error


def _forget_map(cluster: redis.cluster.RedisCluster) -> None:
    """After a node failed us: read the slot map again (as redis-py's own commands do), so that
    the next publish goes to whoever serves the slot now. Best effort: the caller raises."""
    with contextlib.suppress(redis.RedisError, RedisClusterException):
        cluster.nodes_manager.initialize()
