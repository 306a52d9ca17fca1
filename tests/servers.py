"""Real servers for tests: start programs on free loopback ports, wait with deadlines, stop them.

``Program`` is the one way a test starts a program (redis-server, gunicorn, supervisord, nginx):
its output is captured, every wait has a deadline and fails at once if the program exits, and a
failure shows the captured log. ``wait_for`` is the one wait on a condition.
"""

from __future__ import annotations

import contextlib
import os
import random
import select
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from signal import SIGTERM
from typing import Any

import redis

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def free_port_block(count: int) -> int:
    """The first of ``count`` consecutive loopback ports that nothing listens on right now (the
    stack's Redis takes six from EVENTGATE_REDIS_PORT up in sentinel mode, twelve in cluster).

    Taken below the kernel's ephemeral range, as the stack's default 6399 is: a port in that
    range may become some connection's source port while the node that listens on it is down
    (a killed primary, a restart), and the node then cannot bind it again."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for _ in range(100):
        first = random.randrange(10000, max(low - count, 10001))
        with contextlib.ExitStack() as held:
            try:
                for port in range(first, first + count):
                    sock = held.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
                    sock.bind((LOOPBACK, port))
            except OSError:
                continue
            return first
    raise AssertionError(f"no {count} consecutive free ports on loopback")


def wait_for(
    check: Callable[[], object],
    timeout: float,
    what: str,
    log: Path | None = None,
    *,
    unless: Callable[[], str | None] | None = None,
) -> Any:
    """Poll ``check`` until it returns a truthy value; fail with ``what`` and the log's tail.

    ``unless`` says why waiting on is pointless (e.g. the program exited): when it returns a
    reason the wait fails at once instead of at the deadline. A ``check`` that raises counts as
    not yet (a server may refuse connections while it starts).
    """
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            result = check()
            if result:
                return result
        except Exception as error:
            last_error = error
        reason = unless() if unless is not None else None
        if reason or time.monotonic() >= deadline:
            break
        time.sleep(0.05)  # on purpose: the poll interval
    why = reason or f"timed out after {timeout}s"
    raise AssertionError(f"{why} waiting for {what} ({last_error!r}){log_tail(log)}")


def wait_exit(process: subprocess.Popen, timeout: float) -> int:
    """``process.wait(timeout)``, returning as the process exits: Popen's own wait with a timeout
    looks every 50 ms (sleeping in between), and every test stops several programs. Here the
    kernel says when (a pidfd becomes readable at the exit). Raises ``TimeoutExpired``."""
    if process.poll() is not None:
        return process.returncode
    try:
        pidfd = os.pidfd_open(process.pid)
    except OSError:  # no pidfds here: Popen's poll
        return process.wait(timeout)
    try:
        if not select.select([pidfd], [], [], max(timeout, 0))[0]:
            raise subprocess.TimeoutExpired(process.args, timeout)
    finally:
        os.close(pidfd)
    return process.wait()  # exited: reaps at once


def log_tail(log: Path | None, chars: int = 4000) -> str:
    """The end of ``log`` for a failure message ("" when there is none yet)."""
    if log is None or not log.exists():
        return ""
    return f"\n--- {log} ---\n" + log.read_text(errors="replace")[-chars:]


def port_open(port: int) -> bool:
    try:
        with socket.create_connection((LOOPBACK, port), timeout=0.2):
            return True
    except OSError:
        return False


class Program:
    """One real program under test, the only way tests start one: its output goes to ``log``;
    every wait has a deadline, fails at once if the program exits, and shows the log; ``stop``
    always ends it (SIGTERM or ``ask``, then SIGKILL after ``stop_seconds``)."""

    def __init__(
        self,
        argv: Sequence[str],
        log: Path,
        *,
        port: int | None = None,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
        new_session: bool = False,
        stop_seconds: float = 15.0,
        ask_again_seconds: float | None = None,
    ) -> None:
        self.argv = [str(arg) for arg in argv]
        self.log = log
        self.port = port  # the loopback port it serves, for the tests' clients
        self.cwd = cwd
        self.env = dict(env) if env is not None else child_env()
        self.new_session = new_session
        self.stop_seconds = stop_seconds
        # Repeat the request to stop this often while the program runs on: redis-server refuses
        # a SIGTERM while it writes its initial AOF (a replica just synced) and never retries.
        self.ask_again_seconds = ask_again_seconds
        self.process: subprocess.Popen | None = None

    def start(self) -> Program:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as output:
            self.process = subprocess.Popen(
                self.argv, cwd=self.cwd, env=self.env, stdout=output, stderr=subprocess.STDOUT,
                start_new_session=self.new_session,
            )
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None, "not started"
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def exited(self) -> str | None:
        """Why waiting on this program is pointless: it exited (``None`` while it runs)."""
        code = self.returncode
        return None if code is None else f"{Path(self.argv[0]).name} exited with {code}"

    def wait_until(self, check: Callable[[], object], timeout: float, what: str):
        """``wait_for(check)``, failing at once if the program exits meanwhile."""
        return wait_for(check, timeout, what, self.log, unless=self.exited)

    def wait(self, timeout: float) -> int:
        """Wait for the program to exit on its own; its exit status."""
        assert self.process is not None, "not started"
        try:
            return wait_exit(self.process, timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"{self.argv[0]} still running after {timeout}s{log_tail(self.log)}") from None

    def output(self) -> str:
        """Everything the program wrote so far."""
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def signal(self, sig: int) -> None:
        assert self.process is not None, "not started"
        self.process.send_signal(sig)

    def stop(self, sig: int = SIGTERM, ask: Callable[[], None] | None = None) -> int | None:
        """End the program: ``ask()`` it (default: send ``sig``; again every
        ``ask_again_seconds`` if set), wait ``stop_seconds``, then SIGKILL. Its exit status
        (``None`` if never started)."""
        process = self.process
        if process is None:
            return None
        if process.poll() is None:
            request = ask if ask is not None else lambda: process.send_signal(sig)
            deadline = time.monotonic() + self.stop_seconds
            while True:
                request()
                remaining = deadline - time.monotonic()
                try:
                    wait_exit(process, min(remaining, self.ask_again_seconds or remaining))
                    break
                except subprocess.TimeoutExpired:
                    if time.monotonic() >= deadline:
                        process.kill()
                        break
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(10)
        return process.returncode


class RedisServer:
    """A real redis-server on a free loopback port with its own data dir (AOF, like the stack)."""

    def __init__(
        self, workdir: Path, port: int | None = None, extra: tuple[str, ...] = (), *,
        host: str = LOOPBACK, prefix: Sequence[str] = (),
    ) -> None:
        self.port = port or free_port()
        self.workdir = workdir
        self.extra = extra
        # Where it binds and is reached, and what its command line starts with: a node of a
        # network namespace has its own address and starts under ["ip", "netns", "exec", ns].
        self.host = host
        self.prefix = list(prefix)
        self.log = workdir / "redis.log"
        self.program: Program | None = None

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(host=self.host, port=self.port, socket_timeout=5)

    def start(self) -> None:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        args = [
            *self.prefix, binary, "--port", str(self.port), "--bind", self.host,
            "--dir", str(self.workdir),
            "--save", "", "--appendonly", "yes", "--appendfsync", "everysec",
            # Redis 7 refuses DEBUG by default; tests freeze a primary with DEBUG SLEEP.
            "--enable-debug-command", "local",
            # A replica that must resync fully (the one a graceful failover leaves behind, a node
            # restored) gets it at once, not after Redis's default 5 s of waiting for company.
            "--repl-diskless-sync-delay", "0", *self.extra,
        ]
        self.program = Program(args, self.log, stop_seconds=10, ask_again_seconds=0.1).start()
        self.program.wait_until(lambda: self.client().ping(), 10, f"redis on port {self.port}")

    def signal(self, sig: int) -> None:
        assert self.program is not None, "not started"
        self.program.signal(sig)

    def stop(self, sig: int = SIGTERM) -> None:
        if self.program is not None:
            self.program.stop(sig)
        self.program = None

    def restart(self, down_seconds: float = 0.0) -> None:
        """Stop, stay down ``down_seconds`` (the outage under test), start again."""
        self.stop()
        if down_seconds:
            time.sleep(down_seconds)  # on purpose: the outage itself
        self.start()


#: How often a sentinel reads INFO from the nodes it watches, outside a failover (sentinel.c's
#: SENTINEL_INFO_PERIOD, what ``SENTINEL DEBUG info-period`` changes).
REDIS_INFO_PERIOD_MS = 10_000


class SentinelSet:
    """A real Redis Sentinel deployment on loopback: one primary, ``replicas`` replicas and three
    sentinels (``redis-server --sentinel``) watching the service ``service``.

    Tests fail it over (kill -9, ``SENTINEL FAILOVER``, ``DEBUG SLEEP``) and must leave it
    healthy: ``restore()`` starts every data node that was stopped (sentinels make it a replica
    of whoever is primary now) and waits until the set agrees again. ``down_after_ms`` is short
    so that a failover takes a couple of seconds, not the 30 s of Redis' default.

    While ``restore()`` waits, the sentinels read INFO every ``heal_info_period_ms``
    (``SENTINEL DEBUG info-period``) instead of Redis' 10 s: how soon they see the deposed
    primary demoted and every replica's link up, which is all that wait is about. Only then: at
    1 s during a test's own faults they choose differently (a deposed primary not yet demoted,
    its INFO fresh, can win the next failover), and the tests prove Redis' default behaviour."""

    def __init__(
        self, workdir: Path, *, service: str = "eventgate", replicas: int = 2,
        down_after_ms: int = 1000, failover_timeout_ms: int = 4000,
        heal_info_period_ms: int = 1000,
    ) -> None:
        self.workdir = workdir
        self.service = service
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms
        self.heal_info_period_ms = heal_info_period_ms
        # Below the ephemeral range (free_port_block): a killed node's port must still be free
        # when restore() starts it again.
        first = free_port_block(replicas + 4)
        self.nodes = [RedisServer(workdir / f"node{i}", port=first + i)
                      for i in range(replicas + 1)]
        self.sentinel_ports = [first + replicas + 1 + i for i in range(3)]
        self.sentinels: list[Program] = []

    @property
    def url(self) -> str:
        """``EVENTGATE_REDIS_URL`` for this set."""
        hosts = ",".join(f"{LOOPBACK}:{port}" for port in self.sentinel_ports)
        return f"redis+sentinel://{hosts}/{self.service}/0"

    def sentinel(self, index: int = 0) -> redis.Redis:
        return redis.Redis(host=LOOPBACK, port=self.sentinel_ports[index], socket_timeout=5,
                           decode_responses=True)

    def start(self) -> SentinelSet:
        primary = self.nodes[0]
        for node in self.nodes:
            node.workdir.mkdir(parents=True, exist_ok=True)
        primary.start()
        for node in self.nodes[1:]:
            node.extra = ("--replicaof", LOOPBACK, str(primary.port))
            node.start()
        for index, port in enumerate(self.sentinel_ports):
            self.sentinels.append(self._start_sentinel(index, port, primary.port))
        self.wait_healthy()
        return self

    def _start_sentinel(self, index: int, port: int, primary_port: int) -> Program:
        folder = self.workdir / f"sentinel{index}"
        folder.mkdir(parents=True, exist_ok=True)
        conf = folder / "sentinel.conf"
        conf.write_text(
            f"port {port}\nbind {LOOPBACK}\ndir {folder}\n"
            f"sentinel monitor {self.service} {LOOPBACK} {primary_port} 2\n"
            f"sentinel down-after-milliseconds {self.service} {self.down_after_ms}\n"
            f"sentinel failover-timeout {self.service} {self.failover_timeout_ms}\n"
            f"sentinel parallel-syncs {self.service} 2\n"
        )
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        program = Program([binary, conf, "--sentinel"], folder / "sentinel.log", port=port,
                          stop_seconds=10).start()
        program.wait_until(lambda: self.sentinel(index).ping(), 10, f"sentinel on port {port}")
        return program

    def primary(self) -> RedisServer:
        """The data node the sentinels name as primary now."""
        _host, port = self.sentinel().sentinel_get_master_addr_by_name(self.service)
        return next(node for node in self.nodes if node.port == int(port))

    def replicas(self) -> list[RedisServer]:
        primary = self.primary()
        return [node for node in self.nodes if node is not primary]

    def wait_healthy(self, timeout: float = 30) -> RedisServer:
        """Wait until every sentinel names the same primary, it answers as a primary, and every
        running data node replicates from it with its link up; the primary."""

        def agreed() -> RedisServer | None:
            ports = {int(self.sentinel(i).sentinel_get_master_addr_by_name(self.service)[1])
                     for i in range(3)}
            if len(ports) != 1:
                return None
            primary = next(node for node in self.nodes if node.port in ports)
            if primary.client().execute_command("ROLE")[0] != b"master":
                return None
            for node in self.nodes:
                if node is primary or node.program is None:
                    continue
                info = node.client().info("replication")
                if (info.get("master_port") != primary.port
                        or info.get("master_link_status") != "up"):
                    return None
            states = [self.sentinel(i).sentinel_master(self.service) for i in range(3)]
            # A sentinel still ending a failover refuses the next SENTINEL FAILOVER (INPROG).
            if any("failover_in_progress" in state["flags"].split(",") for state in states):
                return None
            if int(states[0]["num-other-sentinels"]) != 2:
                return None
            # Each sentinel must see every running replica as one it could promote: listed,
            # no down/disconnected flag, its link to the primary up as of the sentinel's last
            # INFO (refreshed every 10 s) — else SENTINEL FAILOVER answers NOGOODSLAVE.
            running = sum(1 for node in self.nodes if node is not primary and node.program)
            for index in range(3):
                good = [
                    replica for replica in self.sentinel(index).sentinel_slaves(self.service)
                    if replica["flags"] == "slave"
                    and replica.get("master-link-status") == "ok"
                    and int(replica.get("master-link-down-time", 0)) == 0
                ]
                if len(good) < running:
                    return None
            return primary

        return wait_for(agreed, timeout, f"sentinel set {self.service} healthy")

    def wait_failover(self, old: RedisServer, timeout: float = 30) -> RedisServer:
        """Wait until the sentinels name a primary other than ``old``; the new one."""
        return wait_for(
            lambda: (new := self.primary()) is not old and
            new.client().execute_command("ROLE")[0] == b"master" and new,
            timeout, f"a failover away from port {old.port}")

    def restore(self, timeout: float = 60) -> RedisServer:
        """Start every stopped data node again (as a replica of the current primary, which the
        sentinels also tell it) and wait until the set is healthy; the primary."""
        primary = self.primary()
        for node in self.nodes:
            if node.program is None or not node.program.running:
                node.program = None
                node.extra = ("--replicaof", LOOPBACK, str(primary.port))
                node.start()
        self._info_period(self.heal_info_period_ms)
        try:
            return self.wait_healthy(timeout)
        finally:
            self._info_period(REDIS_INFO_PERIOD_MS)

    def _info_period(self, ms: int) -> None:
        for index in range(len(self.sentinel_ports)):
            self.sentinel(index).execute_command("SENTINEL", "DEBUG", "info-period", ms)

    def stop(self) -> None:
        for program in self.sentinels:
            program.stop()
        self.sentinels = []
        for node in self.nodes:
            node.stop()


def venv_tool(name: str) -> Path:
    """A console script of the running venv (gunicorn, supervisord, …), not one on PATH."""
    return Path(sys.executable).parent / name


def child_env(**overrides: str) -> dict[str, str]:
    """A child's environment: ours, minus any EVENTGATE_* leaking in, plus ``overrides``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVENTGATE_")}
    env.update(overrides)
    return env


def eventgate_env(
    secret_keys: Sequence[str], publish_key: str, redis_url: str, var_dir: Path, /,
    **settings: object,
) -> dict[str, str]:
    """The EVENTGATE_* settings of a child that uses ``redis_url``, plus ``settings`` as
    EVENTGATE_<NAME> overrides (``status_interval=0.2``)."""
    env = {
        "EVENTGATE_SECRET_KEY": ",".join(secret_keys),
        "EVENTGATE_PUBLISH_KEY": publish_key,
        "EVENTGATE_REDIS_URL": redis_url,
        "EVENTGATE_VAR_DIR": str(var_dir),
    }
    env.update({f"EVENTGATE_{key.upper()}": str(value) for key, value in settings.items()})
    return env
