"""Real servers for tests: start programs on free loopback ports, wait with deadlines, stop them.

Every wait has a deadline and every failure shows the captured log of the process that failed.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import redis

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def wait_for(check: Callable[[], object], timeout: float, what: str, log: Path | None = None):
    """Poll ``check`` until it returns a truthy value; fail with ``what`` and the log's tail."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except Exception as error:  # the check itself may fail while a server starts
            last_error = error
        time.sleep(0.05)
    tail = ""
    if log is not None and log.exists():
        tail = "\n--- " + str(log) + " ---\n" + log.read_text(errors="replace")[-4000:]
    raise AssertionError(f"timed out after {timeout}s waiting for {what} ({last_error!r}){tail}")


def stop_process(process: subprocess.Popen, timeout: float = 15) -> None:
    """SIGTERM, then SIGKILL if it has not exited within ``timeout`` seconds."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def port_open(port: int) -> bool:
    try:
        with socket.create_connection((LOOPBACK, port), timeout=0.2):
            return True
    except OSError:
        return False


class RedisServer:
    """A real redis-server on a free loopback port with its own data dir (AOF, like the stack)."""

    def __init__(self, workdir: Path, port: int | None = None, extra: tuple[str, ...] = ()) -> None:
        self.port = port or free_port()
        self.workdir = workdir
        self.extra = extra
        self.log = workdir / "redis.log"
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://{LOOPBACK}:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(host=LOOPBACK, port=self.port, socket_timeout=5)

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        args = [
            binary, "--port", str(self.port), "--bind", LOOPBACK, "--dir", str(self.workdir),
            "--save", "", "--appendonly", "yes", "--appendfsync", "everysec",
            "--logfile", str(self.log), *self.extra,
        ]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        wait_for(lambda: self.client().ping(), 10, f"redis on port {self.port}", self.log)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.process = None

    def restart(self, down_seconds: float = 0.0) -> None:
        self.stop()
        if down_seconds:
            time.sleep(down_seconds)
        self.start()


def child_env(**overrides: str) -> dict[str, str]:
    """A child's environment: ours, minus any EVENTGATE_* leaking in, plus ``overrides``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVENTGATE_")}
    env.update(overrides)
    return env
