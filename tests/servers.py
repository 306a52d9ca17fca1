"""Real servers for tests: start programs on free loopback ports, wait with deadlines, stop them.

``Program`` is the one way a test starts a program (redis-server, gunicorn, supervisord, nginx):
its output is captured, every wait has a deadline and fails at once if the program exits, and a
failure shows the captured log. ``wait_for`` is the one wait on a condition.
"""

from __future__ import annotations

import contextlib
import os
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
    ) -> None:
        self.argv = [str(arg) for arg in argv]
        self.log = log
        self.port = port  # the loopback port it serves, for the tests' clients
        self.cwd = cwd
        self.env = dict(env) if env is not None else child_env()
        self.new_session = new_session
        self.stop_seconds = stop_seconds
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
            return self.process.wait(timeout)
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
        """End the program: ``ask()`` it (default: send ``sig``), wait ``stop_seconds``, then
        SIGKILL. Its exit status (``None`` if never started)."""
        process = self.process
        if process is None:
            return None
        if process.poll() is None:
            if ask is not None:
                ask()
            else:
                process.send_signal(sig)
            try:
                process.wait(self.stop_seconds)
            except subprocess.TimeoutExpired:
                process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(10)
        return process.returncode


class RedisServer:
    """A real redis-server on a free loopback port with its own data dir (AOF, like the stack)."""

    def __init__(self, workdir: Path, port: int | None = None, extra: tuple[str, ...] = ()) -> None:
        self.port = port or free_port()
        self.workdir = workdir
        self.extra = extra
        self.log = workdir / "redis.log"
        self.program: Program | None = None

    @property
    def url(self) -> str:
        return f"redis://{LOOPBACK}:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(host=LOOPBACK, port=self.port, socket_timeout=5)

    def start(self) -> None:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        args = [
            binary, "--port", str(self.port), "--bind", LOOPBACK, "--dir", str(self.workdir),
            "--save", "", "--appendonly", "yes", "--appendfsync", "everysec", *self.extra,
        ]
        self.program = Program(args, self.log, stop_seconds=10).start()
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


def venv_tool(name: str) -> Path:
    """A console script of the running venv (gunicorn, supervisord, …), not one on PATH."""
    return Path(sys.executable).parent / name


def child_env(**overrides: str) -> dict[str, str]:
    """A child's environment: ours, minus any EVENTGATE_* leaking in, plus ``overrides``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVENTGATE_")}
    env.update(overrides)
    return env
