"""``python -m eventgate.deploy.rediscluster [--replicas N] [--timeout S] [--redis-cli PATH]
HOST:PORT …``: make the stack's cluster nodes (``EVENTGATE_REDIS_MODE=cluster``) one Redis
Cluster the first time they start, and return once it serves every slot.

supervisord runs it once per start of the stack, as the program ``redis-cluster-create``. A node
keeps what it knows of its cluster (its id, its peers, its slots, the epoch) in its
``nodes.conf``, so after the first start the nodes find each other on their own: this program
then only waits. It creates the cluster only when every node knows nothing but itself and
serves no slot (the first start, or after a reset: docs/deploy.md). Nodes of which some are in
a cluster and some are not (a ``nodes.conf`` deleted while the others kept theirs) are left as
they are, with a message: creating would split them, joining would need a decision about data.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

import redis

from eventgate.shared.stackredis import CLUSTER_REPLICAS

#: Every hash slot (Redis Cluster's fixed number).
SLOTS = 16384
WAIT_SECONDS = 120.0
_POLL_SECONDS = 0.2
T = TypeVar("T")


def cluster_info(address: str) -> dict[str, str] | None:
    """The node's CLUSTER INFO, None while it does not answer (starting, held after a crash)."""
    host, _, port = address.rpartition(":")
    client = redis.Redis(host=host, port=int(port), socket_timeout=2, socket_connect_timeout=1,
                         decode_responses=True)
    try:
        return dict(client.execute_command("CLUSTER INFO"))
    except redis.RedisError:
        return None
    finally:
        client.close()


def cluster_problem(addresses: Sequence[str]) -> str | None:
    """Why the nodes at ``addresses`` are not yet one working cluster of them all, or None when
    every node answers ``cluster_state:ok``, knows all the others and sees every slot served."""
    for address in addresses:
        info = cluster_info(address)
        if info is None:
            return f"{address} does not answer"
        known = int(info.get("cluster_known_nodes", 0))
        if known != len(addresses):
            return f"{address} knows {known} of the {len(addresses)} nodes"
        if info.get("cluster_state") != "ok" or int(info.get("cluster_slots_ok", 0)) != SLOTS:
            return (f"{address}: cluster_state {info.get('cluster_state')}, "
                    f"{info.get('cluster_slots_ok')} of {SLOTS} slots served")
    return idle_primary(addresses[0]) if addresses else None


def idle_primary(address: str) -> str | None:
    """A node that ``address`` sees as a primary serving no slot: just after creation, a node
    to become a replica is one until its CLUSTER REPLICATE is known to all (the cluster is
    already "ok" then). None when every node serves slots or is a replica."""
    host, _, port = address.rpartition(":")
    client = redis.Redis(host=host, port=int(port), socket_timeout=2, socket_connect_timeout=1,
                         decode_responses=True)
    try:
        listing = str(client.execute_command("CLUSTER", "NODES"))  # as text: no parsing
    except redis.RedisError:
        return f"{address} does not answer"
    finally:
        client.close()
    for line in listing.splitlines():
        fields = line.split()  # id addr flags primary ping pong epoch link [slot …]
        if len(fields) == 8 and "master" in fields[2].split(","):
            return f"{fields[1].split('@')[0]} is a primary serving no slot (not yet a replica)"
    return None


def is_fresh(info: dict[str, str]) -> bool:
    """Whether a node knows no cluster: only itself, no slot (what a new ``nodes.conf`` holds)."""
    return info.get("cluster_known_nodes") == "1" and info.get("cluster_slots_assigned") == "0"


def fresh_nodes(infos: dict[str, dict[str, str]]) -> list[str]:
    """The addresses of the nodes (address → CLUSTER INFO) that know no cluster yet: all of
    them on the first start (create it), none later (it formed; wait for it), some when the
    nodes' states disagree."""
    return [address for address, info in infos.items() if is_fresh(info)]


def create_command(redis_cli: str, addresses: Sequence[str], replicas: int) -> list[str]:
    """redis-cli's cluster creation: the first ``len / (replicas + 1)`` addresses become the
    primaries, the others their replicas; ``--cluster-yes`` takes its plan without asking."""
    return [redis_cli, "--cluster", "create", *addresses, "--cluster-replicas", str(replicas),
            "--cluster-yes"]


def wait(check: Callable[[], T], timeout: float) -> T:
    """``check()``'s first true answer within ``timeout`` seconds, else its last answer."""
    deadline = time.monotonic() + timeout
    while not (answer := check()) and time.monotonic() < deadline:
        time.sleep(_POLL_SECONDS)
    return answer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eventgate.deploy.rediscluster",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--replicas", type=int, default=CLUSTER_REPLICAS)
    parser.add_argument("--timeout", type=float, default=WAIT_SECONDS)
    parser.add_argument("--redis-cli", default="redis-cli")
    parser.add_argument("addresses", nargs="+", metavar="HOST:PORT")
    options = parser.parse_args(argv)
    addresses = options.addresses

    def every_info() -> dict[str, dict[str, str]] | None:
        infos = {address: cluster_info(address) for address in addresses}
        return None if None in infos.values() else infos  # type: ignore[return-value]

    infos = wait(every_info, options.timeout)
    if infos is None:
        print(f"eventgate: not every cluster node answered within {options.timeout:g}s: "
              "no cluster created.", flush=True)
        return 1
    fresh = fresh_nodes(infos)
    if len(fresh) == len(addresses):
        print(f"eventgate: creating the cluster of {' '.join(addresses)}", flush=True)
        # redis-cli colours its report when TERM names a colour terminal; this one is a log.
        done = subprocess.run(create_command(options.redis_cli, addresses, options.replicas),
                              stdin=subprocess.DEVNULL, env={**os.environ, "TERM": "dumb"},
                              check=False)
        if done.returncode != 0:
            print(f"eventgate: redis-cli --cluster create exited {done.returncode}.", flush=True)
            return 1
    elif fresh:
        print(f"eventgate: nodes {', '.join(fresh)} know no cluster while the others are in "
              "one: left as they are. To start afresh, stop the stack and delete the nodes' "
              "folders (docs/deploy.md, \"The stack's Redis in cluster mode\").", flush=True)
        return 1
    if not wait(lambda: cluster_problem(addresses) is None, options.timeout):
        print(f"eventgate: the cluster is not ready after {options.timeout:g}s: "
              f"{cluster_problem(addresses)}.", flush=True)
        return 1
    print(f"eventgate: the cluster of {len(addresses)} nodes serves all {SLOTS} slots.",
          flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
