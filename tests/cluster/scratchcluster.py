"""A Redis Cluster of three primaries with one replica each on loopback, for this directory's
tests until the shared harness (tests/servers.py) lands."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import redis

from tests.servers import LOOPBACK, RedisServer, free_port_block, wait_for

NODES = 6


class ScratchCluster:
    """Six cluster-enabled redis-servers made into a cluster with ``redis-cli --cluster create``."""

    def __init__(self, workdir: Path) -> None:
        first = free_port_block(NODES * 2)  # the nodes', then their cluster buses'
        self.ports = list(range(first, first + NODES))
        self.servers = [
            RedisServer(
                workdir / str(port), port,
                ("--cluster-enabled", "yes", "--cluster-node-timeout", "2000",
                 "--cluster-port", str(port + NODES)),
            )
            for port in self.ports
        ]

    @property
    def url(self) -> str:
        return f"redis+cluster://{LOOPBACK}:{self.ports[0]},{LOOPBACK}:{self.ports[1]}"

    def node(self, port: int) -> redis.Redis:
        return redis.Redis(host=LOOPBACK, port=port, socket_timeout=5)

    def start(self) -> ScratchCluster:
        for server in self.servers:
            server.workdir.mkdir(parents=True, exist_ok=True)
            server.start()
        cli = shutil.which("redis-cli") or "/usr/bin/redis-cli"
        subprocess.run(
            [cli, "--cluster", "create", *(f"{LOOPBACK}:{port}" for port in self.ports),
             "--cluster-replicas", "1", "--cluster-yes"],
            check=True, capture_output=True, timeout=60,
        )
        self.wait_healthy()
        return self

    def wait_healthy(self) -> None:
        """Until every node says the cluster is ok and every primary's replica is in sync."""
        for port in self.ports:
            wait_for(lambda port=port: self.node(port).cluster("info")["cluster_state"] == "ok",
                     30, f"cluster state ok on {port}")
        wait_for(self._replicas_online, 30, "every primary's replica online")

    def server(self, port: int) -> RedisServer:
        return self.servers[self.ports.index(port)]

    def primaries(self) -> list[int]:
        return [port for port in self.ports
                if self.node(port).execute_command("ROLE")[0] == b"master"]

    def _replicas_online(self) -> bool:
        return all(self.node(port).info("replication").get("slave0", {}).get("state") == "online"
                   for port in self.primaries())

    def stop(self) -> None:
        for server in self.servers:
            server.stop()
