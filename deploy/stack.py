"""Running the development stack: its secrets, its health, its processes, and stopping it whole.

``python -m eventgate.deploy.stack init|render|wait-healthy|stop|wait-stopped`` is what the
Makefile runs (rendering itself is deploy/render.py).

Which processes are the stack's: Redis rewrites its process title and supervisord runs with
whatever ``-c`` it was given (relative in the Makefile), so command lines alone miss them.
``stack_processes`` starts from the pid files supervisord, Redis and nginx write under
``<var>/run`` and from supervisord's session, then takes every process below those. The
session is what nothing in the stack changes: a daemonized supervisord (``make up``) leads its
own session, no program of the stack calls setsid, and the kernel never reuses a session's id
while a member of it lives, so a gunicorn worker whose master is gone is still found.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from eventgate.deploy.rediscluster import cluster_problem
from eventgate.deploy.render import render_stack, resolve_var_dir
from eventgate.shared.config import Config, var_dir_from_env, write_dev_env
from eventgate.shared.stackredis import LOOPBACK, StackRedis

#: The pid files under ``<var>/run`` (glob patterns: sentinel mode runs redis-1.pid …,
#: sentinel-1.pid …), and what the process of each must be running: after a crash a stale
#: file's pid may belong to anyone.
PID_FILES = {"supervisord.pid": "supervisord", "redis*.pid": "redis-server",
             "sentinel-*.pid": "redis-server", "nginx.pid": "nginx"}
SHUTDOWN_SECONDS = 30.0


@dataclass(frozen=True)
class Process:
    """One live process as /proc shows it. ``pid`` and ``started`` together name it for good:
    a pid is reused, never with the same start time."""

    pid: int
    parent: int
    session: int
    started: int  # clock ticks after boot
    command: str


def running_processes() -> dict[int, Process]:
    """Every live process on the machine; zombies are left out (they hold no port, no file)."""
    found: dict[int, Process] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            command = (entry / "cmdline").read_bytes()
        except (OSError, IndexError):
            continue
        if stat[0] == "Z":
            continue
        pid = int(entry.name)
        found[pid] = Process(pid=pid, parent=int(stat[1]), session=int(stat[3]),
                             started=int(stat[19]),
                             command=command.replace(b"\0", b" ").decode(errors="replace").strip())
    return found


def descendants(table: Mapping[int, Process], roots: Iterable[int]) -> set[int]:
    """``roots`` (those in ``table``) and every process of ``table`` below them."""
    children: dict[int, list[int]] = defaultdict(list)
    for process in table.values():
        children[process.parent].append(process.pid)
    found: set[int] = set()
    todo = [pid for pid in roots if pid in table]
    while todo:
        pid = todo.pop()
        if pid not in found:
            found.add(pid)
            todo.extend(children[pid])
    return found


def stack_processes(var: Path, known: Iterable[Process] = ()) -> dict[int, Process]:
    """pid -> Process of every live process of the stack under ``var``: supervisord, Redis and
    nginx by their pid files, every member of supervisord's session, any process whose command
    line names ``var``, and everything below them. ``known``: an earlier answer, taken before a
    shutdown removed the pid files; those of it still running, and their sessions, count too."""
    table = running_processes()
    var = var.resolve()
    files = [(path, command) for pattern, command in PID_FILES.items()
             for path in (var / "run").glob(pattern)]
    roots = {pid for pid in (_pid_file(path, command, table) for path, command in files) if pid}
    roots.update(p.pid for p in known if p.pid in table and table[p.pid].started == p.started)
    # A known leader's session counts while its pid is not someone else's (the leader exited,
    # or still runs): then the id still names that session.
    leaders = [table[pid] for pid in roots]
    leaders += [p for p in known if p.pid not in table or table[p.pid].started == p.started]
    sessions = {p.session for p in leaders if p.session == p.pid}
    needle = str(var)
    roots.update(p.pid for p in table.values() if p.session in sessions or needle in p.command)
    ours = _ancestors(table, os.getpid())  # the make recipe that runs us may name var too
    return {pid: table[pid] for pid in descendants(table, roots - ours) - ours}


def stop_stack(var: Path, timeout_seconds: float) -> bool:
    """Shut the stack under ``var`` down and return once every process of it has exited, so
    that its ports are free for the next ``make up``. A stack that is not running is stopped."""
    known = stack_processes(var)
    conf = var / "conf" / "supervisord.conf"
    # Fails when nothing listens on its socket: nothing to shut down, or what is left is found
    # below and waited for.
    subprocess.run([sys.executable, "-m", "supervisor.supervisorctl", "-c", str(conf), "shutdown"],
                   capture_output=True, timeout=SHUTDOWN_SECONDS, check=False)
    return wait_stopped(var, timeout_seconds, known.values())


def wait_stopped(var: Path, timeout_seconds: float, known: Iterable[Process] = ()) -> bool:
    """Wait until no process of the stack under ``var`` (``stack_processes``) is left; on the
    deadline print what still runs."""
    known = list(known)
    deadline = time.monotonic() + timeout_seconds
    while left := stack_processes(var, known):
        if time.monotonic() >= deadline:
            lines = [f"  {p.pid}: {p.command}" for p in left.values()]
            print(f"eventgate: still running after {timeout_seconds:g}s:", *lines, sep="\n",
                  file=sys.stderr)
            return False
        time.sleep(0.1)
    return True


def wait_healthy(url: str, timeout_seconds: float, log_dir: Path,
                 redis_problem: Callable[[], str | None] | None = None) -> bool:
    """Poll ``url`` until it answers 200 and ``redis_problem`` (the stack's Redis Cluster not
    ready yet, in cluster mode) says nothing; on the deadline print why and the logs' tails."""
    deadline = time.monotonic() + timeout_seconds
    last = "no answer yet"
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                problem = redis_problem() if redis_problem is not None else None
                if response.status == 200 and problem is None:
                    return True
                last = f"HTTP {response.status}" if response.status != 200 else problem
        except urllib.error.HTTPError as error:
            last = f"HTTP {error.code}"
        except (OSError, urllib.error.URLError) as error:
            last = str(error)
        time.sleep(0.2)
    print(f"eventgate: the stack was not healthy within {timeout_seconds:g}s ({url}: {last}).",
          file=sys.stderr)
    for log in sorted(log_dir.glob("*.log")):
        lines = log.read_text(errors="replace").splitlines()[-15:]
        print(f"--- {log} (last {len(lines)} lines) ---", *lines, sep="\n", file=sys.stderr)
    print("eventgate: the stack is left running for a look; `make down` stops it.", file=sys.stderr)
    return False


def _pid_file(path: Path, command: str, table: Mapping[int, Process]) -> int | None:
    try:
        pid = int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    process = table.get(pid)
    return pid if process is not None and command in process.command else None


def _ancestors(table: Mapping[int, Process], pid: int) -> set[int]:
    chain = {pid}
    while pid in table and table[pid].parent not in chain:
        pid = table[pid].parent
        chain.add(pid)
    return chain


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eventgate.deploy.stack", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("init", help="write <var>/eventgate.env with dev secrets, once")
    render = commands.add_parser("render", help="render supervisord.conf and nginx.conf")
    render.add_argument("--foreground", action="store_true", help="nodaemon=true")
    render.add_argument("--web-workers", type=int, default=2)
    render.add_argument("--stream-workers", type=int, default=2)
    healthy = commands.add_parser("wait-healthy", help="wait for GET /healthz through nginx")
    healthy.add_argument("--timeout", type=float, default=60.0)
    stop = commands.add_parser("stop", help="shut the stack down, wait for every process")
    stop.add_argument("--timeout", type=float, default=60.0)
    stopped = commands.add_parser("wait-stopped", help="wait until no stack process is left")
    stopped.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args(argv)
    root = Path.cwd()

    # These need no Config, which cannot exist before `init` has written the secrets.
    var = (root / var_dir_from_env()).resolve()
    if args.command == "stop":
        return 0 if stop_stack(var, args.timeout) else 1
    if args.command == "wait-stopped":
        return 0 if wait_stopped(var, args.timeout) else 1
    if args.command == "init":
        print(write_dev_env(var))
        return 0
    config = Config.from_env()
    if args.command == "render":
        path = render_stack(
            config,
            root=root,
            python_bin_dir=Path(sys.executable).parent,
            foreground=args.foreground,
            web_workers=args.web_workers,
            stream_workers=args.stream_workers,
        )
        print(path)
        return 0
    url = f"http://127.0.0.1:{config.port}/healthz"
    log_dir = resolve_var_dir(config, root) / "log"
    return 0 if wait_healthy(url, args.timeout, log_dir, stack_redis_problem(config)) else 1


def stack_redis_problem(config: Config) -> Callable[[], str | None] | None:
    """What keeps the stack's own Redis Cluster from serving (cluster mode), None otherwise:
    the apps' /healthz does not ask Redis, and a cluster takes a few seconds to form."""
    stack = StackRedis(config.redis_mode, config.redis_port)
    if config.redis_mode != "cluster" or not stack.serves(config.redis_url):
        return None
    addresses = [f"{LOOPBACK}:{port}" for port in stack.data_ports]
    return lambda: cluster_problem(addresses)


if __name__ == "__main__":
    sys.exit(main())
