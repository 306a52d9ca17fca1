"""Stack: the whole deployment (redis, web, stream, nginx under supervisord) on free loopback ports.

It renders the real templates with deploy/render.py:render_stack into a temporary var dir, so
what the tests exercise is what ``make run`` deploys. Every wait has a deadline; a failure shows
the logs.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import secrets
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import redis

from eventgate.deploy.render import render_stack
from eventgate.deploy.stack import (
    Process,
    descendants,
    running_processes,
    stack_processes,
    stack_redis_problem,
)
from eventgate.shared.config import ENV_FILE_NAME, Config
from eventgate.shared.stackredis import StackRedis
from tests.servers import (
    LOOPBACK,
    Program,
    child_env,
    free_port,
    free_port_block,
    port_open,
    venv_tool,
    wait_for,
)

REPO_ROOT = Path(__file__).absolute().parent.parent
START_SECONDS = 30.0
STOP_SECONDS = 60.0


def http_get(url: str, headers: Mapping[str, str] | None = None, timeout: float = 5.0):
    """(status, headers, body) of one GET; an HTTP error status is an answer, not an exception."""
    request = urllib.request.Request(url, headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def process_tree(pid: int) -> dict[int, int]:
    """pid -> start time of ``pid`` and all its live descendants (see ``still_alive``)."""
    table = running_processes()
    return {child: table[child].started for child in descendants(table, [pid])}


def still_alive(tree: Mapping[int, int]) -> list[int]:
    """The pids of ``tree`` still running the same process (a reused pid has another start)."""
    table = running_processes()
    return [pid for pid, started in tree.items() if pid in table and table[pid].started == started]


class Stack:
    """One stack under a private var dir. ``start()`` returns once nginx answers both health checks
    (the stream one only when ``stream/`` exists); ``stop()`` asserts that nothing is left running.

    ``settings`` are extra ``EVENTGATE_*`` variables (e.g. ``{"EVENTGATE_HEARTBEAT": "1"}``).
    ``more_publish_keys`` / ``more_secret_keys`` are entries written to ``eventgate.env`` after
    the stack's own key (e.g. a restricted ``KEY:orders.*``, or an old signing key still verifying).
    """

    def __init__(
        self,
        workdir: Path,
        *,
        stream_workers: int = 1,
        web_workers: int = 1,
        settings: Mapping[str, str] | None = None,
        root: Path = REPO_ROOT,
        more_publish_keys: Sequence[str] = (),
        more_secret_keys: Sequence[str] = (),
    ) -> None:
        self.root = root
        self.var_dir = workdir / "var"
        self.port, self.web_port, self.stream_port = free_port(), free_port(), free_port()
        # Cluster mode's Redis takes twelve ports from EVENTGATE_REDIS_PORT up (six nodes, their
        # cluster bus), sentinel mode six (shared/stackredis.py)
        self.redis_port = free_port_block(12)
        self.publish_key = secrets.token_urlsafe(32)
        self.secret_key = secrets.token_urlsafe(32)
        self.stream_workers = stream_workers
        self.web_workers = web_workers
        environ = {
            "EVENTGATE_VAR_DIR": str(self.var_dir),
            "EVENTGATE_PORT": str(self.port),
            "EVENTGATE_WEB_PORT": str(self.web_port),
            "EVENTGATE_STREAM_PORT": str(self.stream_port),
            "EVENTGATE_REDIS_PORT": str(self.redis_port),
            **(settings or {}),
        }
        self.var_dir.mkdir(parents=True, exist_ok=True)
        env_file = self.var_dir / ENV_FILE_NAME
        secret_keys = ",".join([self.secret_key, *more_secret_keys])
        publish_keys = ",".join([self.publish_key, *more_publish_keys])
        env_file.write_text(
            f"EVENTGATE_SECRET_KEY={secret_keys}\nEVENTGATE_PUBLISH_KEY={publish_keys}\n"
        )
        env_file.chmod(0o600)
        self.config: Config = Config.from_env(environ)
        #: The stack's own Redis: its mode and every port it listens on.
        self.stack_redis = StackRedis(self.config.redis_mode, self.redis_port)
        self.conf = render_stack(
            self.config,
            root=self.root,
            python_bin_dir=Path(sys.executable).parent,
            foreground=True,
            web_workers=web_workers,
            stream_workers=stream_workers,
        )
        self.process: Program | None = None
        self._output = workdir / "supervisord.out"
        self._known: dict[int, Process] = {}

    # -- addresses and clients ------------------------------------------------------------------

    def url(self, path: str = "/") -> str:
        """A URL through nginx, the public entry."""
        return f"http://{LOOPBACK}:{self.port}{path}"

    def post(self, path: str, body: object, key: str | bool | None = None,
             source: str = LOOPBACK, headers: Mapping[str, str] | None = None,
             ) -> tuple[int, dict[str, str], bytes]:
        """(status, headers, body) of a JSON POST through nginx from ``source`` (any 127.x
        address), with the stack's publisher key (or ``key``; ``False`` for none) and any
        other ``headers`` (an ``Idempotency-Key``)."""
        headers = {"Content-Type": "application/json", **(headers or {})}
        if key is not False:
            headers["Authorization"] = f"Bearer {key or self.publish_key}"
        conn = http.client.HTTPConnection(LOOPBACK, self.port, timeout=10,
                                          source_address=(source, 0))
        try:
            conn.request("POST", path, json.dumps(body), headers)
            response = conn.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            conn.close()

    def redis(self) -> redis.Redis:
        """The Redis on EVENTGATE_REDIS_PORT: the stack's one Redis, or in sentinel mode
        ``redis-1``, the first primary (the sentinels say which node is the primary now)."""
        return redis.Redis(host=LOOPBACK, port=self.redis_port, socket_timeout=5)

    def log(self, name: str) -> str:
        """The text of ``<var>/log/<name>.log`` ("web", "stream", "redis", "nginx",
        "nginx-access", "nginx-error", "supervisord"; "redis-1", "sentinel-1" … in sentinel
        mode); "" while it does not exist."""
        path = self.var_dir / "log" / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def supervisorctl(
        self, *args: str, timeout: float = STOP_SECONDS
    ) -> subprocess.CompletedProcess:
        """Run ``supervisorctl -c <conf> ARGS``; output captured as text, exit status unchecked."""
        return subprocess.run(
            [str(venv_tool("supervisorctl")), "-c", str(self.conf), *args],
            capture_output=True, text=True, timeout=timeout, env=child_env(), check=False,
        )

    # -- life cycle -----------------------------------------------------------------------------

    def start(self) -> Stack:
        self.process = Program(
            [venv_tool("supervisord"), "-n", "-c", self.conf], self._output,
            cwd=self.root, new_session=True, stop_seconds=STOP_SECONDS,
        ).start()
        try:
            self.wait_healthy()
        except BaseException:
            self.stop(check=False)
            raise
        return self

    def wait_healthy(self, timeout: float = START_SECONDS) -> None:
        """Wait until nginx answers /healthz (web) and /streams/healthz (stream) with 200, and
        in cluster mode until the stack's Redis Cluster serves every slot."""
        paths = ["/healthz"]
        if (self.root / "stream" / "wsgi.py").exists():
            paths.append("/streams/healthz")
        for path in paths:
            self.wait_until(lambda path=path: http_get(self.url(path), timeout=2)[0] == 200,
                            timeout, f"GET {path}")
        if (redis_problem := stack_redis_problem(self.config)) is not None:
            self.wait_until(lambda: redis_problem() is None, timeout, "the Redis Cluster ready")

    def wait_until(self, check: Callable[[], object], timeout: float, what: str) -> object:
        """``wait_for(check)`` that fails at once if supervisord exits, showing every log."""
        unless = self.process.exited if self.process is not None else None
        try:
            return wait_for(check, timeout, what, unless=unless)
        except AssertionError as error:
            raise AssertionError(f"{error}\n{self.diagnostics()}") from None

    def stop(self, check: bool = True) -> None:
        """Shut supervisord down and wait for it; with ``check``, assert no process is left."""
        if self.process is None:
            return
        program, self.process = self.process, None
        # supervisord itself too, in case it has not written its pid file yet
        supervisord = running_processes().get(program.pid)
        self._known = stack_processes(self.var_dir, [supervisord] if supervisord else [])

        def shutdown() -> None:
            if self.supervisorctl("shutdown").returncode != 0:
                program.signal(signal.SIGTERM)  # its socket is not up (yet): same shutdown

        returncode = program.stop(ask=shutdown)
        left = self._leftovers()
        for pid in left:  # never leave strays to the next test, even when failing
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        if check:
            assert returncode == 0, f"supervisord exited {returncode}\n" + self.diagnostics()
            assert not left, f"processes left after shutdown: {left}\n{self.diagnostics()}"
            ports = (self.port, self.web_port, self.stream_port, *self.stack_redis.ports)
            busy = [p for p in ports if port_open(p)]
            assert not busy, f"ports still answering after shutdown: {busy}"

    def _leftovers(self) -> dict[int, str]:
        """Processes of the stack still alive once they have had 5 s to exit."""

        def left() -> dict[int, str]:
            found = stack_processes(self.var_dir, self._known.values())
            return {pid: process.command for pid, process in found.items()}

        with contextlib.suppress(AssertionError):  # the caller reports them, with their pids
            wait_for(lambda: not left(), 5, "the stack's processes to exit")
        return left()

    def diagnostics(self) -> str:
        """supervisorctl status and the tail of every log, for failure messages."""
        parts = []
        if self.process is not None and self.process.running:
            parts.append("--- supervisorctl status ---\n" + self.supervisorctl("status").stdout)
        logs = sorted((self.var_dir / "log").glob("*.log")) + [self._output]
        for path in logs:
            if path.exists():
                parts.append(f"--- {path.name} ---\n" + path.read_text(errors="replace")[-3000:])
        return "\n".join(parts)

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
