"""The Redis the development stack runs for each ``EVENTGATE_REDIS_MODE``: its ports, and the URL
the apps get for it.

Every port is taken from one block that starts at ``EVENTGATE_REDIS_PORT`` (P): ``single`` uses P;
``sentinel`` runs data nodes on P, P+1 and P+2 (the one on P starts as the primary) and sentinels
on P+3, P+4 and P+5; ``cluster`` runs six cluster nodes on P … P+5 (three primaries, each with
one replica) whose cluster bus listens on P+6 … P+11. One block is one range to keep free, and it
stays far from 65535 whatever P is (Redis' own habits, sentinels on port + 20000 and the cluster
bus on port + 10000, would not). The apps reach the sentinel set as
``redis+sentinel://127.0.0.1:P+3,127.0.0.1:P+4,127.0.0.1:P+5/eventgate/0`` and the cluster as
``redis+cluster://127.0.0.1:P,127.0.0.1:P+1,…,127.0.0.1:P+5``.

Config (shared/config.py) takes its default URL from here; deploy/render.py renders the programs.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

#: What ``EVENTGATE_REDIS_MODE`` may be.
REDIS_MODES = ("single", "sentinel", "cluster")
#: Replicas per primary in cluster mode (``redis-cli --cluster create --cluster-replicas``).
CLUSTER_REPLICAS = 1
#: The name the stack's sentinels know the primary by (the URL's path names it).
SENTINEL_SERVICE = "eventgate"
LOOPBACK = "127.0.0.1"
# The stack binds 127.0.0.1 only: [::1] does not reach it.
_LOOPBACK_NAMES = (LOOPBACK, "localhost")
#: The port a URL's address means when it names none (redis-py's defaults).
_DEFAULT_PORTS = {"redis": 6379, "redis+sentinel": 26379, "redis+cluster": 6379}
#: The URL scheme the apps get for each mode.
_SCHEMES = {"single": "redis", "sentinel": "redis+sentinel", "cluster": "redis+cluster"}
_DATA_NODES = {"single": 1, "sentinel": 3, "cluster": 6}
_SENTINELS = {"single": 0, "sentinel": 3, "cluster": 0}


@dataclass(frozen=True)
class StackRedis:
    """The stack's own Redis in ``mode`` (one of REDIS_MODES) from ``port`` up."""

    mode: str
    port: int

    @property
    def data_ports(self) -> tuple[int, ...]:
        """The data nodes' ports; the first node starts as the primary."""
        return tuple(self.port + i for i in range(_DATA_NODES[self.mode]))

    @property
    def sentinel_ports(self) -> tuple[int, ...]:
        first = self.port + len(self.data_ports)
        return tuple(first + i for i in range(_SENTINELS[self.mode]))

    @property
    def bus_ports(self) -> tuple[int, ...]:
        """The cluster bus port of each data node (``cluster-port``), in cluster mode only."""
        if self.mode != "cluster":
            return ()
        first = self.port + len(self.data_ports)
        return tuple(first + i for i in range(len(self.data_ports)))

    @property
    def ports(self) -> tuple[int, ...]:
        """Every port the stack's Redis listens on."""
        return self.data_ports + self.sentinel_ports + self.bus_ports

    @property
    def url(self) -> str:
        """The ``EVENTGATE_REDIS_URL`` the apps get when the environment names none."""
        if self.mode == "single":
            return f"redis://{LOOPBACK}:{self.port}/0"
        if self.mode == "cluster":
            return "redis+cluster://" + ",".join(f"{LOOPBACK}:{port}" for port in self.data_ports)
        hosts = ",".join(f"{LOOPBACK}:{port}" for port in self.sentinel_ports)
        return f"redis+sentinel://{hosts}/{SENTINEL_SERVICE}/0"

    def serves(self, url: str) -> bool:
        """Whether ``url`` names this Redis (any database of it, credentials or not). When it
        does not, the user runs a Redis of their own and the stack runs no Redis program."""
        parts = urlsplit(url)
        wanted = _SCHEMES[self.mode]
        if parts.scheme != wanted:
            return False
        hosts = parts.netloc.rpartition("@")[2].split(",")
        addresses = [_address(host, _DEFAULT_PORTS[wanted]) for host in hosts]
        ours = self.sentinel_ports if self.mode == "sentinel" else self.data_ports
        return all(host in _LOOPBACK_NAMES and port in ours for host, port in addresses)


def _address(text: str, default_port: int) -> tuple[str, int | None]:
    host, colon, port = text.rpartition(":")
    if not colon:
        return text.lower(), default_port
    try:
        return host.lower(), int(port)
    except ValueError:
        return text.lower(), None
