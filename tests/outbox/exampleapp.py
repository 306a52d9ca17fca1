"""docs/example_app.py as the tests run it: gunicorn on its own loopback port, a SQLite file,
the session's Redis; its pages open their streams on a pool on another port (CORS)."""

from __future__ import annotations

import http.client
import json
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import redis

from eventgate.shared import keys
from tests.servers import LOOPBACK, Program, venv_tool
from tests.stack import REPO_ROOT, http_get

DOCS = REPO_ROOT / "docs"
CHANNEL = "orders"  # the app's one channel


@dataclass(frozen=True)
class LoggedEvent:
    id: str
    type: str
    data: dict


@dataclass
class ExampleApp:
    base: str
    program: Program
    database: Path
    redis: redis.Redis

    @classmethod
    def start(cls, port: int, stream_url: str, workdir: Path, env: dict[str, str],
              client: redis.Redis) -> ExampleApp:
        """Create the tables with the app's own command, then serve it on ``port``, its pages
        opening their streams at ``stream_url``: one worker with threads, as a browser may hold
        an idle connection open (a sync worker would wait on it instead of serving the next)."""
        database = workdir / "orders.db"
        env = {**env, "EXAMPLE_DATABASE_URL": f"sqlite:///{database}",
               "EXAMPLE_STREAM_URL": stream_url}
        created = subprocess.run(
            [sys.executable, "-m", "flask", "--app", str(DOCS / "example_app.py"),
             "create-tables"], env=env, cwd=workdir, capture_output=True, text=True, timeout=30)
        assert created.returncode == 0, created.stderr
        base = f"http://{LOOPBACK}:{port}"
        program = Program(
            [venv_tool("gunicorn"), "--chdir", DOCS, "--bind", f"{LOOPBACK}:{port}",
             "--workers", "1", "--threads", "4", "--control-socket", workdir / "example.ctl",
             "example_app:app"],
            workdir / "example.log", port=port, cwd=workdir, env=env).start()
        app = cls(base, program, database, client)
        try:
            program.wait_until(lambda: http_get(f"{base}/nothing")[0] == 404, 20, "the app")
        except BaseException:
            app.stop()
            raise
        return app

    def stop(self) -> None:
        self.program.stop()
        self.redis.close()

    def post(self, path: str, body: object) -> tuple[int, dict]:
        """(status, JSON answer) of a JSON POST to the app."""
        conn = http.client.HTTPConnection(LOOPBACK, int(self.base.rsplit(":", 1)[1]), timeout=10)
        try:
            conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
            response = conn.getresponse()
            return response.status, json.loads(response.read())
        finally:
            conn.close()

    def query(self, sql: str) -> list[tuple]:
        """Rows of ``sql`` on the app's database, read as another process would."""
        with sqlite3.connect(self.database, timeout=5) as connection:
            return connection.execute(sql).fetchall()

    def head(self) -> str:
        """The id of the channel's newest logged event ("0" when none): a position to read on
        from."""
        newest = self.redis.xrevrange(keys.log_key(CHANNEL), count=1)
        return newest[0][0].decode() if newest else "0"

    def logged_after(self, position: str) -> list[LoggedEvent]:
        """The channel's events in Redis after ``position``, in order."""
        entries = self.redis.xrange(keys.log_key(CHANNEL), min=f"({position}")
        return [LoggedEvent(entry_id.decode(), fields[b"type"].decode(),
                            json.loads(fields[b"data"]))
                for entry_id, fields in entries]
