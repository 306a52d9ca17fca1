"""The apps under a failover: a real web pool (``gunicorn eventgate.web.wsgi:app`` with the worker
class and hooks the supervisor template uses) beside a stream pool, both pointed at a Sentinel
set, without the rest of the stack."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tests.servers import LOOPBACK, Program, child_env, free_port, venv_tool
from tests.stack import http_get
from tests.stream.pool import StreamPool

ROOT = Path(__file__).resolve().parents[2]


class WebPool:
    def __init__(self, workdir: Path, env: dict[str, str], workers: int = 1) -> None:
        self.port = free_port()
        self.log = workdir / f"web-{self.port}.log"
        self.program = Program(
            [
                venv_tool("gunicorn"), "eventgate.web.wsgi:app",
                "-c", "python:eventgate.web.gunicorn_conf",
                "--worker-class", "eventgate.web.worker.WebWorker", "--threads", "4",
                "--bind", f"{LOOPBACK}:{self.port}", "--workers", str(workers),
                "--keep-alive", "30", "--timeout", "30", "--graceful-timeout", "5",
                "--control-socket", str(workdir / f"web-{self.port}.ctl"),
            ],
            self.log, cwd=ROOT, env=child_env(**env),
        )

    @property
    def base(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def start(self) -> WebPool:
        self.program.start()
        self.program.wait_until(lambda: http_get(f"{self.base}/readyz")[0] == 200, 20,
                                "the web pool to be ready")
        return self

    def stop(self) -> None:
        self.program.stop()

    def log_text(self) -> str:
        return self.program.output()


@dataclass
class Apps:
    """One stream pool and two web pools on the same Redis: ``web`` confirms a publish once the
    primary stored it, ``durable_web`` once a replica holds it too
    (EVENTGATE_DURABLE_REPLICAS=1)."""

    stream: StreamPool
    web: WebPool
    durable_web: WebPool

    def stop(self) -> None:
        for pool in (self.stream, self.web, self.durable_web):
            pool.stop()
