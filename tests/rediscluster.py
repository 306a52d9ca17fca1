"""A real Redis Cluster for tests (three primaries, a replica each, on loopback or in network
namespaces) and the faults the cluster tests inflict on it: kill -9 and failover, restore, online
resharding of a slot (also stopped halfway), killing pub/sub clients."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from signal import SIGKILL
from typing import Any

import redis
from redis.cluster import ClusterNode, RedisCluster
from redis.crc import key_slot

from tests.servers import LOOPBACK, RedisServer, free_port_block, wait_for

CLUSTER_SLOTS = 16384


@dataclass
class SlotMigration:
    """One slot on its way from ``source`` to ``target`` (both primaries): between
    ``begin_migration`` and ``finish_migration`` the source answers ``ASK`` for the slot's keys
    it no longer holds."""

    slot: int
    source: RedisServer
    target: RedisServer


class RedisClusterSet:
    """A real Redis Cluster on loopback: ``primaries`` primaries with one replica each, created
    with ``redis-cli --cluster create``, and the faults the cluster tests inflict on it.

    Every node has its own data dir (its nodes.conf survives a kill, so a node started again
    rejoins as itself) and two ports from one block below the ephemeral range: its client port
    and, through ``cluster-port``, its cluster-bus port (Redis' default, port + 10000, could land
    in the ephemeral range and be taken while the node is down). ``hosts`` and ``prefixes``
    (one each per node) put nodes in network namespaces: the address each binds and announces,
    and what its command line starts with (``["ip", "netns", "exec", "ns1"]``).

    ``node_timeout_ms`` is short so that a kill -9 fails over in about two seconds.
    ``require_full_coverage`` is off (Redis' default is on): with it on, once a dead primary is
    marked failed every shard answers CLUSTERDOWN until its replica is promoted (about a second
    measured), whereas eventgate means the other shards to keep publishing and streaming (its
    RedisCluster does not require full coverage either). Each wait has a deadline; a test that
    faults the set leaves it as ``restore()`` makes it: every node running, all slots served,
    nodes agreeing."""

    def __init__(
        self, workdir: Path, *, primaries: int = 3, node_timeout_ms: int = 1000,
        hosts: Sequence[str] | None = None, prefixes: Sequence[Sequence[str]] | None = None,
        require_full_coverage: bool = False,
    ) -> None:
        count = primaries * 2
        hosts = list(hosts or [LOOPBACK] * count)
        prefixes = list(prefixes or [[]] * count)
        assert len(hosts) == len(prefixes) == count, f"{count} hosts and prefixes, one a node"
        self.workdir = workdir
        self.primary_count = primaries
        first = free_port_block(2 * count)  # client ports, then the cluster-bus ports
        self.nodes = [
            RedisServer(
                workdir / f"node{i}", port=first + i, host=hosts[i], prefix=prefixes[i],
                extra=(
                    "--appendonly", "no",  # after RedisServer's "yes": the last one counts
                    "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                    "--cluster-port", str(first + count + i),
                    "--cluster-announce-ip", hosts[i],
                    "--cluster-node-timeout", str(node_timeout_ms),
                    # A replica whose link was down a while may still be promoted: the tests
                    # want a failover every time, not Redis' refusal of a stale replica.
                    "--cluster-replica-validity-factor", "0",
                    "--cluster-require-full-coverage", "yes" if require_full_coverage else "no",
                    # CLUSTER SLOTS leaves out a replica whose replication offset is still 0:
                    # the primary's ping moves it, every second instead of every ten.
                    "--repl-ping-replica-period", "1",
                    # Redis takes any address but 127.0.0.1 for a remote one (a node in a host).
                    *(("--protected-mode", "no") if hosts[i] != LOOPBACK else ()),
                ),
            )
            for i in range(count)
        ]
        self.served: dict[int, int] = {}  # a stopped primary's port → a slot it served
        self.migrations: list[SlotMigration] = []  # begun and not finished
        self.timings: dict[str, float] = {}  # seconds: "create", "failover", "restore"
        self._killed_at = 0.0
        self._ids: dict[int, str] = {}  # port → cluster node id

    # -- addresses and clients -------------------------------------------------------------

    @staticmethod
    def address(node: RedisServer) -> str:
        return f"{node.host}:{node.port}"

    @property
    def url(self) -> str:
        """``EVENTGATE_REDIS_URL`` for this set: every node a starting point."""
        return "redis+cluster://" + ",".join(self.address(node) for node in self.nodes)

    @property
    def startup_nodes(self) -> list[ClusterNode]:
        return [ClusterNode(node.host, node.port) for node in self.nodes]

    def node(self, index: int) -> RedisServer:
        return self.nodes[index]

    def client(self, node: RedisServer | int) -> redis.Redis:
        """A plain client of one node (no redirects followed), answers decoded."""
        node = self._resolve(node)
        return redis.Redis(host=node.host, port=node.port, socket_timeout=5,
                           decode_responses=True)

    def cluster_client(self, **options: Any) -> RedisCluster:
        """A ``RedisCluster`` over every node (``options`` go to its constructor)."""
        options.setdefault("decode_responses", True)
        options.setdefault("socket_timeout", 5)
        return RedisCluster(startup_nodes=self.startup_nodes, **options)

    def running(self) -> list[RedisServer]:
        return [node for node in self.nodes if node.program is not None and node.program.running]

    def _resolve(self, node: RedisServer | int) -> RedisServer:
        return self.nodes[node] if isinstance(node, int) else node

    def _at(self, host: str, port: int) -> RedisServer:
        return next(node for node in self.nodes if node.port == int(port) and node.host == host)

    # -- what the cluster says -------------------------------------------------------------

    def node_id(self, node: RedisServer | int) -> str:
        """The node's cluster id (kept in its nodes.conf, so known even while it is down once
        asked, as ``kill`` does)."""
        node = self._resolve(node)
        if node.port not in self._ids:
            self._ids[node.port] = self.client(node).execute_command("CLUSTER", "MYID")
        return self._ids[node.port]

    def flags(self, node: RedisServer | int, seen_by: RedisServer | int) -> set[str]:
        """``node``'s flags in ``seen_by``'s CLUSTER NODES: ``master``, ``slave``, ``fail?``
        (suspected by ``seen_by``), ``fail`` (agreed by a majority of primaries), …"""
        node_id = self.node_id(node)
        for line in self.client(seen_by).execute_command("CLUSTER", "NODES").splitlines():
            fields = line.split()
            if fields[0] == node_id:
                return set(fields[2].split(","))
        return set()

    def role(self, node: RedisServer | int) -> str:
        """``master`` or ``slave``, as the node itself says (ROLE)."""
        return self.client(node).execute_command("ROLE")[0]

    def primaries(self) -> list[RedisServer]:
        return [node for node in self.running() if self.role(node) == "master"]

    def replicas(self) -> list[RedisServer]:
        return [node for node in self.running() if self.role(node) == "slave"]

    def slot_map(self, node: RedisServer | int) -> dict[tuple[int, int], tuple[str, ...]]:
        """One node's CLUSTER SLOTS: slot range → (primary address, replica addresses sorted)."""
        found = {}
        for start, end, primary, *replicas in self.client(node).execute_command(
                "CLUSTER", "SLOTS"):
            found[(start, end)] = (f"{primary[0]}:{primary[1]}",
                                   *sorted(f"{host}:{port}" for host, port, *_ in replicas))
        return found

    def primary_of_slot(self, slot: int) -> RedisServer:
        """The primary serving ``slot``, as the first running node sees it."""
        for (start, end), (primary, *_) in self.slot_map(self.running()[0]).items():
            if start <= slot <= end:
                host, port = primary.rsplit(":", 1)
                return self._at(host, int(port))
        raise AssertionError(f"slot {slot} is not served")

    def slot_of(self, key: str) -> int:
        return int(self.client(self.running()[0]).execute_command("CLUSTER", "KEYSLOT", key))

    def key_on(self, node: RedisServer, prefix: str = "key") -> str:
        """A key (all of it a hash tag ``{<prefix><n>}``, so ``<key>:anything`` shares its slot)
        whose slot ``node`` serves now."""
        owned = [(start, end) for (start, end), (primary, *_) in self.slot_map(node).items()
                 if primary == self.address(node)]
        for number in range(100_000):
            key = f"{{{prefix}{number}}}"
            if any(start <= key_slot(key.encode()) <= end for start, end in owned):
                return key
        raise AssertionError(f"no key of prefix {prefix} on {self.address(node)}")

    def slots_of(self, node: RedisServer) -> list[int]:
        """The first slot of each range ``node`` serves."""
        return [start for (start, _end), (primary, *_) in self.slot_map(node).items()
                if primary == self.address(node)]

    # -- start, health, stop ---------------------------------------------------------------

    def start(self, timeout: float = 60) -> RedisClusterSet:
        began = time.monotonic()
        for node in self.nodes:
            node.workdir.mkdir(parents=True, exist_ok=True)
            node.start()
        binary = shutil.which("redis-cli") or "/usr/bin/redis-cli"
        created = subprocess.run(
            [binary, "--cluster", "create", *(self.address(node) for node in self.nodes),
             "--cluster-replicas", "1", "--cluster-yes"],
            capture_output=True, text=True, timeout=timeout,
        )
        assert created.returncode == 0, (
            f"redis-cli --cluster create: {created.stdout}{created.stderr}")
        self.wait_healthy(timeout)
        self.timings["create"] = time.monotonic() - began
        return self

    def health(self) -> dict[tuple[int, int], tuple[str, ...]] | None:
        """The slot map when the running nodes are healthy, else ``None``: every one says
        cluster_state:ok with all 16384 slots ok and knows every node; all give the same slot
        map, covering every slot with ``primaries`` running primaries; every running replica's
        link is up; with every node running, every primary has its replica."""
        running = self.running()
        maps = []
        for node in running:
            client = self.client(node)
            info = dict(line.split(":", 1) for line in
                        client.execute_command("CLUSTER", "INFO").split() if ":" in line)
            if (info.get("cluster_state") != "ok"
                    or int(info.get("cluster_slots_ok", 0)) != CLUSTER_SLOTS
                    or int(info.get("cluster_known_nodes", 0)) != len(self.nodes)):
                return None
            if client.execute_command("ROLE")[0] == "slave" and (
                    client.info("replication").get("master_link_status") != "up"):
                return None
            maps.append(self.slot_map(node))
        if any(other != maps[0] for other in maps[1:]):
            return None
        covered = sum(end - start + 1 for start, end in maps[0])
        owners = {primary for primary, *_ in maps[0].values()}
        addresses = {self.address(node) for node in running}
        if covered != CLUSTER_SLOTS or len(owners) != self.primary_count or owners - addresses:
            return None
        if len(running) == len(self.nodes) and any(len(entry) < 2 for entry in maps[0].values()):
            return None
        return maps[0]

    def wait_healthy(self, timeout: float = 30) -> dict[tuple[int, int], tuple[str, ...]]:
        return wait_for(self.health, timeout, "the Redis Cluster healthy",
                        self.nodes[0].log)

    def leftovers(self) -> str:
        """What pgrep still finds of this set's redis-servers ("" when nothing)."""
        found = subprocess.run(
            ["pgrep", "-af", "|".join(f"redis-server .*:{node.port}( |$)" for node in self.nodes)],
            capture_output=True, text=True, check=False)
        return found.stdout.strip()

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    # -- faults ----------------------------------------------------------------------------

    def kill(self, node: RedisServer | int) -> RedisServer:
        """kill -9 one node; if it is a primary, remember a slot of its for ``wait_failover``
        and ``restore``."""
        node = self._resolve(node)
        self.node_id(node)
        slots = self.slots_of(node) if self.role(node) == "master" else []
        if slots:
            self.served[node.port] = slots[0]
        assert node.program is not None, "not running"
        node.signal(SIGKILL)
        node.program.wait(10)
        self._killed_at = time.monotonic()
        return node

    def kill_primary(self, node: RedisServer | int) -> RedisServer:
        """kill -9 a primary (a node or an index into ``nodes``); the node killed."""
        node = self._resolve(node)
        assert self.role(node) == "master", f"{self.address(node)} is not a primary"
        return self.kill(node)

    def wait_failover(self, old: RedisServer, timeout: float = 30) -> RedisServer:
        """Wait until the cluster is healthy again with another node serving ``old``'s slots
        (its replica, promoted); that node. ``timings["failover"]``: seconds since the kill."""
        new = self._wait_promoted(old, timeout)
        self.timings["failover"] = time.monotonic() - self._killed_at
        return new

    def _wait_promoted(self, old: RedisServer, timeout: float) -> RedisServer:
        slot = self.served[old.port]

        def promoted() -> RedisServer | None:
            if self.health() is None:
                return None
            new = self.primary_of_slot(slot)
            return new if new is not old else None

        return wait_for(promoted, timeout, f"{self.address(old)}'s slots failed over",
                        self.nodes[0].log)

    def restore(self, timeout: float = 60) -> dict[tuple[int, int], tuple[str, ...]]:
        """Finish any migration left open, start every stopped node again (from its nodes.conf:
        a former primary rejoins as a replica of the node that took its slots — checked) and
        wait until the set is healthy; the slot map.

        A killed primary starts again only once its replica has taken over: started sooner it
        would still be the primary of its slots, with none of its data (no persistence here),
        and its replica would copy the empty set."""
        began = time.monotonic()
        stopped = [node for node in self.nodes
                   if node.program is None or not node.program.running]
        for node in stopped:
            if node.port in self.served:
                self._wait_promoted(node, timeout)
        for migration in list(self.migrations):
            self.finish_migration(migration, timeout)
        for node in stopped:
            node.program = None
            node.start()
        slot_map = self.wait_healthy(timeout)
        for node in stopped:
            slot = self.served.pop(node.port, None)
            if slot is None:
                continue
            role = self.client(node).execute_command("ROLE")
            owner = self.primary_of_slot(slot)
            assert role[0] == "slave" and (role[1], int(role[2])) == (owner.host, owner.port), (
                f"{self.address(node)} came back as {role[:3]}, not a replica of "
                f"{self.address(owner)}")
        if stopped:
            self.timings["restore"] = time.monotonic() - began
        return slot_map

    def fail_over(self, replica: RedisServer | int, timeout: float = 30) -> RedisServer:
        """CLUSTER FAILOVER on a replica (the graceful, coordinated switch: no write lost); once
        the cluster is healthy with it as primary, the former primary (now its replica)."""
        replica = self._resolve(replica)
        role = self.client(replica).execute_command("ROLE")
        assert role[0] == "slave", f"{self.address(replica)} is not a replica"
        old = self._at(role[1], int(role[2]))
        slot = self.slots_of(old)[0]
        self.client(replica).execute_command("CLUSTER", "FAILOVER")
        wait_for(lambda: self.health() and self.primary_of_slot(slot) is replica
                 and self.role(old) == "slave", timeout,
                 f"{self.address(replica)} primary in place of {self.address(old)}",
                 replica.log)
        return old

    def kill_pubsub(self, node: RedisServer | int) -> int:
        """CLIENT KILL TYPE pubsub on one node (shard-channel subscribers included); how many."""
        return int(self.client(node).execute_command("CLIENT", "KILL", "TYPE", "pubsub"))

    # -- resharding ------------------------------------------------------------------------

    def begin_migration(self, slot: int, to_node: RedisServer | int) -> SlotMigration:
        """Open the move of ``slot`` to the primary ``to_node``: IMPORTING on the target,
        MIGRATING on the source, no key moved yet (``move_keys`` moves some)."""
        target = self._resolve(to_node)
        source = self.primary_of_slot(slot)
        assert target is not source, f"slot {slot} is already on {self.address(target)}"
        assert self.role(target) == "master", f"{self.address(target)} is not a primary"
        self.client(target).execute_command(
            "CLUSTER", "SETSLOT", slot, "IMPORTING", self.node_id(source))
        self.client(source).execute_command(
            "CLUSTER", "SETSLOT", slot, "MIGRATING", self.node_id(target))
        migration = SlotMigration(slot, source, target)
        self.migrations.append(migration)
        return migration

    def move_keys(self, migration: SlotMigration, limit: int | None = None,
                  batch: int = 100) -> int:
        """MIGRATE the slot's keys from the source to the target (KEYS form, ``batch`` at a
        time) until none is left or ``limit`` moved; how many moved."""
        source = self.client(migration.source)
        target = migration.target
        moved = 0
        while limit is None or moved < limit:
            count = batch if limit is None else min(batch, limit - moved)
            keys = source.execute_command("CLUSTER", "GETKEYSINSLOT", migration.slot, count)
            if not keys:
                break
            source.execute_command("MIGRATE", target.host, target.port, "", 0, 5000,
                                   "KEYS", *keys)
            moved += len(keys)
        return moved

    def finish_migration(self, migration: SlotMigration, timeout: float = 30) -> None:
        """Move the keys left, then CLUSTER SETSLOT NODE on the target, the source and every
        other primary; return once every running node agrees the target serves the slot."""
        self.move_keys(migration)
        target_id = self.node_id(migration.target)
        others = [node for node in self.primaries()
                  if node is not migration.target and node is not migration.source]
        for node in (migration.target, migration.source, *others):
            self.client(node).execute_command(
                "CLUSTER", "SETSLOT", migration.slot, "NODE", target_id)
        self.migrations.remove(migration)
        wait_for(lambda: self.health() and self.primary_of_slot(migration.slot)
                 is migration.target, timeout,
                 f"slot {migration.slot} served by {self.address(migration.target)} everywhere",
                 self.nodes[0].log)

    def migrate_slot(self, slot: int, to_node: RedisServer | int,
                     timeout: float = 30) -> SlotMigration:
        """Move ``slot`` and its keys online to the primary ``to_node`` (redis-cli's
        resharding, for one slot); returns once every node agrees."""
        migration = self.begin_migration(slot, to_node)
        self.finish_migration(migration, timeout)
        return migration
