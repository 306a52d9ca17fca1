"""A real stream pool: ``gunicorn -k gevent eventgate.stream.wsgi:app`` on a free loopback port,
started with the flags the supervisor template uses, for tests that need the stream tier alone."""

from __future__ import annotations

import json
import subprocess
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from tests.servers import LOOPBACK, Program, child_env, eventgate_env, free_port, venv_tool

if TYPE_CHECKING:
    from tests.hosts import Host

ROOT = Path(__file__).resolve().parents[2]


def pool_settings(
    redis_url: str, secret_keys: tuple[str, ...], publish_key: str, var_dir: Path, /,
    **settings: str,
) -> dict[str, str]:
    """A test pool's EVENTGATE_* environment: short heartbeat and retry, plus ``settings``
    (``cors_origins="http://…"`` → ``EVENTGATE_CORS_ORIGINS``; ``redis_url=…`` overrides the
    first argument)."""
    return eventgate_env(secret_keys, publish_key, redis_url, var_dir,
                         **{"heartbeat": "1", "retry_ms": "300", **settings})


class StreamPool:
    def __init__(
        self, workdir: Path, env: dict[str, str], workers: int = 1, timeout: int = 30,
        host: Host | None = None,
    ) -> None:
        """``host``: run in that host of a tests/hosts.py Network, on its address."""
        self.address = host.address if host else LOOPBACK
        self.port = host.take_port() if host else free_port()
        self.workdir = workdir
        self.env = env
        self.workers = workers
        self.timeout = timeout
        name = f"stream-{host.name}-{self.port}" if host else f"stream-{self.port}"
        self.log = workdir / f"{name}.log"
        argv = [
            venv_tool("gunicorn"), "eventgate.stream.wsgi:app",
            "-c", "python:eventgate.stream.gunicorn_conf",
            "--worker-class", "eventgate.stream.worker.StreamWorker",
            "--bind", f"{self.address}:{self.port}",
            "--workers", str(workers), "--keep-alive", "0", "--max-requests", "0",
            "--timeout", str(timeout), "--graceful-timeout", "5",
            "--control-socket", str(workdir / f"{name}.ctl"),
        ]
        self.program = Program(host.wrap(argv) if host else argv, self.log, cwd=ROOT,
                               env=child_env(**env))

    def start(self, connected: bool = True) -> StreamPool:
        """Start; return once a worker answers (and, with ``connected``, holds its pub/sub
        connection to Redis)."""
        self.program.start()
        self.program.wait_until(lambda: self.health()["redis_connected"] or not connected, 15,
                                "the stream pool")
        return self

    def health(self) -> dict:
        url = f"http://{self.address}:{self.port}/streams/healthz"
        with urllib.request.urlopen(url, timeout=2) as response:
            return json.loads(response.read())

    def wait_until(self, check: Callable[[], object], timeout: float, what: str) -> object:
        """Wait on ``check`` with the pool's log in the failure (see Program.wait_until)."""
        return self.program.wait_until(check, timeout, what)

    def worker_pids(self) -> list[int]:
        out = subprocess.run(
            ["pgrep", "-P", str(self.program.pid)], capture_output=True, text=True, check=False
        )
        return [int(pid) for pid in out.stdout.split()]

    def signal(self, sig: int) -> None:
        self.program.signal(sig)

    def stop(self) -> None:
        self.program.stop()

    def log_text(self) -> str:
        return self.program.output()
