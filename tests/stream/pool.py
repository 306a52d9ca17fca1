"""A real stream pool: ``gunicorn -k gevent eventgate.stream.wsgi:app`` on a free loopback port,
started with the flags the supervisor template uses, for tests that need the stream tier alone."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

from tests.servers import LOOPBACK, child_env, free_port, stop_process, wait_for

ROOT = Path(__file__).resolve().parents[2]


class StreamPool:
    def __init__(
        self, workdir: Path, env: dict[str, str], workers: int = 1, timeout: int = 30
    ) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.env = env
        self.workers = workers
        self.timeout = timeout
        self.log = workdir / f"stream-{self.port}.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> StreamPool:
        self.workdir.mkdir(parents=True, exist_ok=True)
        gunicorn = Path(sys.executable).parent / "gunicorn"
        args = [
            str(gunicorn), "eventgate.stream.wsgi:app",
            "-c", "python:eventgate.stream.gunicorn_conf",
            "--worker-class", "gevent", "--bind", f"{LOOPBACK}:{self.port}",
            "--workers", str(self.workers), "--keep-alive", "0", "--max-requests", "0",
            "--timeout", str(self.timeout), "--graceful-timeout", "5",
            "--control-socket", str(self.workdir / f"stream-{self.port}.ctl"),
        ]
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                args, cwd=ROOT, env=child_env(**self.env), stdout=log, stderr=subprocess.STDOUT
            )
        wait_for(lambda: self.health()["redis_connected"], 15, "the stream pool", self.log)
        return self

    def health(self) -> dict:
        url = f"http://{LOOPBACK}:{self.port}/streams/healthz"
        with urllib.request.urlopen(url, timeout=2) as response:
            return json.loads(response.read())

    def worker_pids(self) -> list[int]:
        out = subprocess.run(["pgrep", "-P", str(self.process.pid)], capture_output=True, text=True)
        return [int(pid) for pid in out.stdout.split()]

    def signal(self, sig: int) -> None:
        self.process.send_signal(sig)

    def stop(self) -> None:
        if self.process:
            stop_process(self.process)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""
