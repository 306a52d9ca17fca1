"""``python -m eventgate.deploy.redisnode [--hold-seconds N] --sentinel-conf PATH … -- redis-server
ARGS``: start one data node of the stack's Sentinel set (``EVENTGATE_REDIS_MODE=sentinel``) in the
role the sentinels chose for it, then become that redis-server (exec: same pid, same signals). In
cluster mode (no ``--sentinel-conf``) it only holds a crashed node down: the cluster's replica
takes over meanwhile, and Redis Cluster itself makes the node a replica when it returns.

supervisord alone would get two things wrong, and docs/ha.md ("Running the stack in sentinel
mode") explains both:

- **A crash must look like one.** supervisord starts a program that died again within a second,
  long before the sentinels call it down (``down-after-milliseconds``): a killed primary would be
  back, with what its append-only file kept, and never fail over. Redis removes its pid file when
  it shuts down cleanly and leaves it behind when it is killed, so a node that finds its pid file
  waits ``--hold-seconds`` first; the sentinels fail it over meanwhile.
- **A node must not come back as a second primary.** Started without ``replicaof``, a node is a
  primary, with stale data, until a sentinel demotes it (some 8 s later): a split brain. Each
  sentinel writes the primary it follows into its config file on every switch, so the node reads
  those files and starts as a replica of that primary unless it is the primary. ``replicaof`` is
  never rendered into a config file: it is decided here, afresh, at every start.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from eventgate.shared.stackredis import LOOPBACK, SENTINEL_SERVICE


def sentinel_primary(confs: Sequence[Path], service: str = SENTINEL_SERVICE) -> int | None:
    """The port of the primary that the sentinels' config files name for ``service``: the one
    with the highest ``config-epoch`` (the latest failover), the most named among equals; None
    when no file names one (missing, or being rewritten at this moment)."""
    seen: Counter[tuple[int, int]] = Counter()
    for conf in confs:
        try:
            lines = [line.split() for line in conf.read_text().splitlines()]
        except OSError:
            continue
        epoch, port = 0, None
        for words in lines:
            if words[:3] == ["sentinel", "monitor", service] and len(words) >= 5:
                port = int(words[4]) if words[4].isdigit() else None
            elif words[:3] == ["sentinel", "config-epoch", service] and words[3:4]:
                epoch = int(words[3]) if words[3].isdigit() else 0
        if port is not None:
            seen[(epoch, port)] += 1
    if not seen:
        return None
    return max(seen, key=lambda key: (key[0], seen[key]))[1]


def node_command(redis_argv: Sequence[str], primary: int | None) -> list[str]:
    """``redis_argv`` (it names ``--port``), as a replica of ``primary`` unless it is the primary
    or none is known."""
    port = int(redis_argv[list(redis_argv).index("--port") + 1])
    if primary is None or primary == port:
        return list(redis_argv)
    return [*redis_argv, "--replicaof", LOOPBACK, str(primary)]


def hold_after_crash(redis_argv: Sequence[str], seconds: float) -> None:
    """Wait ``seconds`` when the last run left its pid file (``--pidfile``): it crashed."""
    args = list(redis_argv)
    if "--pidfile" not in args:
        return
    pidfile = Path(args[args.index("--pidfile") + 1])
    if pidfile.exists() and seconds > 0:
        print(f"eventgate: {pidfile} is left from a run that crashed: starting in {seconds:g}s, "
              "once this node has been failed over (sentinels, or cluster).", flush=True)
        time.sleep(seconds)
        pidfile.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if "--" not in args:
        print("eventgate: usage: python -m eventgate.deploy.redisnode [OPTIONS] -- redis-server "
              "ARGS", file=sys.stderr)
        return 2
    split = args.index("--")
    parser = argparse.ArgumentParser(prog="python -m eventgate.deploy.redisnode",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hold-seconds", type=float, default=0.0)
    parser.add_argument("--sentinel-conf", type=Path, action="append", default=[])
    options = parser.parse_args(args[:split])
    redis_argv = args[split + 1:]
    hold_after_crash(redis_argv, options.hold_seconds)
    command = node_command(redis_argv, sentinel_primary(options.sentinel_conf))
    print(f"eventgate: starting {' '.join(command[1:])}", flush=True)
    os.execv(command[0], command)
    return 1  # not reached: execv replaces this process or raises


if __name__ == "__main__":
    sys.exit(main())
