"""The stack's Redis as supervisord programs, for each ``EVENTGATE_REDIS_MODE``
(shared/stackredis.py has the ports): ``single`` is the one ``redis`` program; ``sentinel`` is
``redis-1`` (the first primary), ``redis-2``, ``redis-3`` and ``sentinel-1`` … ``sentinel-3``;
``cluster`` is the cluster nodes ``redis-1`` … ``redis-6`` and ``redis-cluster-create``, which
runs once per start and creates the cluster only the first time (deploy/rediscluster.py). None
when ``EVENTGATE_REDIS_URL`` names a Redis of the user's own.

Every data node runs with ``maxmemory`` (``EVENTGATE_REDIS_MAXMEMORY``) and ``noeviction``, so a
full Redis refuses a publish (the apps answer 503) instead of evicting event logs. Why the
sentinel timings are what they are: docs/ha.md, "Running the stack in sentinel mode"; the
cluster nodes take the same ones (a node is down after ``DOWN_AFTER_MS``, a crashed one is held
down long enough for its replica to take over, and comes back as that replica's replica).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from eventgate.shared.config import Config
from eventgate.shared.stackredis import LOOPBACK, SENTINEL_SERVICE, StackRedis

#: A primary that answers no PING for this long is down for a sentinel; two agreeing fail it over.
DOWN_AFTER_MS = 2000
#: How long a failover may take before another sentinel tries again.
FAILOVER_TIMEOUT_MS = 10000
QUORUM = 2
#: A data node that crashed stays down this long before supervisord's restart runs it, so that
#: the sentinels fail it over first (a failover takes about down-after + 1.5 s here).
CRASH_HOLD_SECONDS = 4 * DOWN_AFTER_MS / 1000
DATA_PRIORITY, SENTINEL_PRIORITY, CLUSTER_CREATE_PRIORITY = 10, 11, 11


@dataclass(frozen=True)
class RedisProgram:
    """One supervisord program of the stack's Redis (deploy/supervisor/redis-program.conf.tmpl)."""

    name: str
    command: tuple[str, ...]
    directory: Path
    priority: int
    #: Runs once per start of the stack and exits 0 (no restart), instead of running for good.
    oneshot: bool = False


def redis_programs(
    config: Config, var: Path, python_bin_dir: Path, redis_server: str
) -> list[RedisProgram]:
    """The stack's Redis programs; none for a Redis of the user's own. Sentinel mode also writes
    each sentinel's config file (``sentinel_conf``) when it is missing: the sentinels rewrite it
    afterwards, and it is their memory of the primary across restarts."""
    stack = StackRedis(config.redis_mode, config.redis_port)
    if not stack.serves(config.redis_url):
        return []
    data = ("--bind", "127.0.0.1", "--appendonly", "yes", "--appendfsync", "everysec",
            "--save", '""', "--daemonize", "no", "--logfile", '""',
            "--maxmemory", config.redis_maxmemory, "--maxmemory-policy", "noeviction")
    if config.redis_mode == "single":
        command = (redis_server, "--port", str(stack.port), "--dir", str(var / "redis"), *data,
                   "--pidfile", str(var / "run" / "redis.pid"))
        return [RedisProgram("redis", command, var / "redis", DATA_PRIORITY)]
    if config.redis_mode == "cluster":
        return _cluster_programs(stack, var, python_bin_dir, redis_server, data)
    sentinels = []
    for index, port in enumerate(stack.sentinel_ports, start=1):
        name = f"sentinel-{index}"
        conf = sentinel_conf(var, port)
        if not conf.exists():
            conf.parent.mkdir(parents=True, exist_ok=True)
            conf.write_text(_sentinel_text(name, port, var, stack.data_ports[0]))
        sentinels.append(RedisProgram(name, (redis_server, str(conf), "--sentinel"), conf.parent,
                                      SENTINEL_PRIORITY))
    nodes = []
    for index, port in enumerate(stack.data_ports, start=1):
        name = f"redis-{index}"
        folder = var / "redis" / f"node-{port}"
        folder.mkdir(parents=True, exist_ok=True)
        confs = (f"--sentinel-conf={sentinel_conf(var, p)}" for p in stack.sentinel_ports)
        command = (str(python_bin_dir / "python"), "-m", "eventgate.deploy.redisnode",
                   f"--hold-seconds={CRASH_HOLD_SECONDS:g}", *confs, "--",
                   redis_server, "--port", str(port), "--dir", str(folder), *data,
                   # A replica that must resync fully (a rejoining old primary) gets it at once
                   # instead of after Redis' 5 s wait for more replicas (docs/ha.md).
                   "--repl-diskless-sync-delay", "0",
                   "--pidfile", str(var / "run" / f"{name}.pid"))
        nodes.append(RedisProgram(name, command, folder, DATA_PRIORITY))
    return nodes + sentinels


def _cluster_programs(stack: StackRedis, var: Path, python_bin_dir: Path, redis_server: str,
                      data: tuple[str, ...]) -> list[RedisProgram]:
    python = str(python_bin_dir / "python")
    nodes = []
    for index, (port, bus) in enumerate(zip(stack.data_ports, stack.bus_ports, strict=True),
                                        start=1):
        name = f"redis-{index}"
        folder = var / "redis" / f"cluster-{port}"
        folder.mkdir(parents=True, exist_ok=True)
        # No --sentinel-conf: the wrapper only holds a crashed node down; Redis Cluster itself
        # makes a returning old primary a replica (its nodes.conf, its peers' newer epoch).
        command = (python, "-m", "eventgate.deploy.redisnode",
                   f"--hold-seconds={CRASH_HOLD_SECONDS:g}", "--",
                   redis_server, "--port", str(port), "--dir", str(folder), *data,
                   "--cluster-enabled", "yes", "--cluster-port", str(bus),
                   "--cluster-config-file", str(folder / "nodes.conf"),
                   "--cluster-node-timeout", str(DOWN_AFTER_MS),
                   # A shard failing over must not stop the others: with Redis' default (yes)
                   # every shard answers CLUSTERDOWN for about a second of it (measured).
                   "--cluster-require-full-coverage", "no",
                   # A replica is listed in CLUSTER SLOTS only once it has replicated something:
                   # ping it every second, not every 10 s, so a new cluster is whole at once.
                   "--repl-ping-replica-period", "1",
                   "--repl-diskless-sync-delay", "0",
                   "--pidfile", str(var / "run" / f"{name}.pid"))
        nodes.append(RedisProgram(name, command, folder, DATA_PRIORITY))
    create = (python, "-m", "eventgate.deploy.rediscluster",
              f"--redis-cli={Path(redis_server).with_name('redis-cli')}",
              *(f"{LOOPBACK}:{port}" for port in stack.data_ports))
    return [*nodes, RedisProgram("redis-cluster-create", create, var / "redis",
                                 CLUSTER_CREATE_PRIORITY, oneshot=True)]


def sentinel_conf(var: Path, port: int) -> Path:
    """The config file of the sentinel on ``port``; a folder per port, so that another
    ``EVENTGATE_REDIS_PORT`` starts afresh instead of following nodes that are not there."""
    return var / "redis" / f"sentinel-{port}" / "sentinel.conf"


def _sentinel_text(name: str, port: int, var: Path, primary_port: int) -> str:
    service = SENTINEL_SERVICE
    return (
        f"# {name} of the eventgate stack (EVENTGATE_REDIS_MODE=sentinel), written once by\n"
        "# deploy/redisprograms.py. The sentinel rewrites this file on every change (its id, the\n"
        "# primary it follows, the epoch) and the data nodes read it to learn their role\n"
        "# (deploy/redisnode.py): never edit it while the stack runs; delete the folder, the\n"
        "# stack down, to start afresh.\n"
        f"port {port}\nbind 127.0.0.1\ndaemonize no\n"
        f"pidfile {var}/run/{name}.pid\nlogfile \"\"\ndir {var}/redis/sentinel-{port}\n"
        f"sentinel monitor {service} 127.0.0.1 {primary_port} {QUORUM}\n"
        f"sentinel down-after-milliseconds {service} {DOWN_AFTER_MS}\n"
        f"sentinel failover-timeout {service} {FAILOVER_TIMEOUT_MS}\n"
        f"sentinel parallel-syncs {service} 1\n"
    )
