"""A real PostgreSQL server for the outbox tests: Debian's binaries, a throwaway cluster on a free
loopback port, databases made and dropped per test.

PostgreSQL refuses to run as root, and the test suite often runs as root (CI, network
namespaces), so the server's programs then run as a system user through ``runuser``. Its files
live in a temporary directory of that user's outside pytest's tmp_path (that one is root's, 0700,
which the user could not enter). Durability is switched off: a test cluster that crashes is
thrown away, never recovered.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url

from tests.servers import LOOPBACK, free_port

INSTALL_ROOT = Path("/usr/lib/postgresql")
#: The system user that runs the server when we are root and Debian's ``postgres`` is missing.
OWN_USER = "eventgate-pg"
#: The superuser role initdb creates; every test connects as it.
ROLE = "postgres"

#: Speed over safety, for tests only; the port and socket directory are added per server.
SETTINGS = {
    "listen_addresses": f"'{LOOPBACK}'",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "200",
    "shared_buffers": "32MB",
}
#: Trust, and only from the server's own socket and loopback (initdb's default adds ::1 and
#: replication lines we do not want).
HBA = f"local all all trust\nhost all all {LOOPBACK}/32 trust\n"


def bindir() -> Path:
    """The bin directory of the highest PostgreSQL version installed the Debian way."""
    versions = [p.parent for p in INSTALL_ROOT.glob("*/bin/initdb")]
    if not versions:
        raise AssertionError(
            f"no PostgreSQL under {INSTALL_ROOT}: run deploy/system-deps.sh --test"
        )
    return max(versions, key=lambda p: tuple(int(x) for x in p.parent.name.split(".")
                                             if x.isdigit()))


def server_user() -> pwd.struct_passwd | None:
    """The user the server runs as: None (ourselves) unless we are root, else Debian's
    ``postgres``, else our own system user, created on first use."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", OWN_USER):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    # Another session may create it at the same moment: useradd then fails, getpwnam answers.
    subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
                    OWN_USER], capture_output=True, check=False)
    return pwd.getpwnam(OWN_USER)


def connect(url: str, **options) -> psycopg.Connection:
    """A plain psycopg connection to the database of a SQLAlchemy ``url`` (what ``postgres_url``
    gives), for what SQLAlchemy does not wrap: LISTEN, notifies. The caller closes it."""
    parts = make_url(url)
    return psycopg.connect(host=parts.host, port=parts.port, user=parts.username,
                           dbname=parts.database, connect_timeout=10, **options)


class PostgresServer:
    """One PostgreSQL cluster on a free loopback port: ``start()``, ``create_database(name)``,
    ``url(name)``, ``drop_database(name)``, ``stop()``."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.bin = bindir()
        self.user = server_user()
        self.root: Path | None = None
        self.pid: int | None = None
        #: How long ``start()`` took (initdb included), for reports.
        self.start_seconds: float | None = None

    @property
    def data(self) -> Path:
        assert self.root is not None, "not started"
        return self.root / "data"

    @property
    def log(self) -> Path:
        assert self.root is not None, "not started"
        return self.root / "postgres.log"

    def url(self, database: str) -> str:
        """The SQLAlchemy URL of ``database`` (psycopg 3 driver), as the superuser."""
        return f"postgresql+psycopg://{ROLE}@{LOOPBACK}:{self.port}/{database}"

    def connect(self, database: str = "postgres", **options) -> psycopg.Connection:
        """A psycopg connection to ``database``; the caller closes it."""
        return connect(self.url(database), **options)

    def create_database(self, name: str) -> None:
        with self.connect(autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))

    def drop_database(self, name: str) -> None:
        """Drop ``name`` even if a test left connections open to it."""
        with self.connect(autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
                         .format(sql.Identifier(name)))

    def _run(self, *args: str) -> subprocess.CompletedProcess:
        """One of the server's programs, as the server's user, in its directory (initdb
        fails in a working directory that user cannot enter)."""
        prefix = ["runuser", "-u", self.user.pw_name, "--"] if self.user else []
        return subprocess.run([*prefix, *args], cwd=self.root, capture_output=True, text=True,
                              timeout=60, check=False)

    def start(self) -> PostgresServer:
        began = time.monotonic()
        self.root = Path(tempfile.mkdtemp(prefix="eventgate-pg-"))
        try:
            if self.user:
                os.chown(self.root, self.user.pw_uid, self.user.pw_gid)
            self._check(self._run(
                str(self.bin / "initdb"), "-D", str(self.data), "-U", ROLE, "--auth=trust",
                "--encoding=UTF8", "--locale=C", "--no-sync", "--no-instructions",
            ), "initdb")
            self._configure()
            self._check(self._run(
                str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log),
                "-w", "-t", "30", "start",
            ), "pg_ctl start")
            self.pid = self._postmaster_pid()
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - began
        return self

    def _configure(self) -> None:
        settings = {
            **SETTINGS, "port": str(self.port), "unix_socket_directories": f"'{self.root}'",
        }
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write("\n# tests/postgres.py\n")
            conf.writelines(f"{key} = {value}\n" for key, value in settings.items())
        (self.data / "pg_hba.conf").write_text(HBA)  # rewritten in place: owner unchanged

    def _check(self, done: subprocess.CompletedProcess, what: str) -> None:
        if done.returncode != 0:
            log = self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""
            raise AssertionError(
                f"{what} failed ({done.returncode}):\n{done.stdout}{done.stderr}"
                f"\n--- {self.log} ---\n{log}"
            )

    def _postmaster_pid(self) -> int | None:
        """The postmaster's pid (first line of postmaster.pid); pg_ctl makes it a process group
        leader. Its children lead groups of their own, but exit once they see it die."""
        with contextlib.suppress(OSError, ValueError, IndexError):
            return int((self.data / "postmaster.pid").read_text().split()[0])
        return None

    def stop(self) -> None:
        """Stop at once (no checkpoint: the data is thrown away) and remove the files. Safe to
        call twice, and after a start that failed halfway."""
        if self.root is None:
            return
        pid = self.pid or self._postmaster_pid()
        if pid is not None:
            done = self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "stop",
                             "-m", "immediate", "-w", "-t", "10")
            if done.returncode != 0:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)
        shutil.rmtree(self.root, ignore_errors=True)
        self.root = None
        self.pid = None
