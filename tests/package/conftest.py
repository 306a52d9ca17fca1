"""The package from its wheel alone: the wheel, built once, and two fresh venvs outside the
checkout (one plain, one with the ``server`` extra) whose commands run in an empty directory, so
that nothing can come from the repository.

Each venv installs the versions the test's own venv has (a constraints file), so pip finds them
in its cache; the package index serves what the cache lacks. The venvs are made without pip of
their own (ensurepip alone takes longer than the rest) and filled at the same time by this venv's
pip (``pip --python``), with no byte-compiling: the two installs take the time of one.
"""

from __future__ import annotations

import email
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.servers import LOOPBACK, Program, child_env, free_port

ROOT = Path(__file__).resolve().parents[2]
#: Not source: version control, venvs, runtime files, caches and earlier builds.
_NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv*", "var", "build", "dist", "*.egg-info", "__pycache__", ".*cache",
    ".hypothesis",
)
#: What would let a child find code outside its venv.
_LEAKY_ENV = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "PYTHONUSERBASE")


def run(args: list[str], cwd: Path, env: dict[str, str], timeout: float):
    """Run a command to its end; a failure shows what it printed."""
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True,
                            timeout=timeout)
    assert result.returncode == 0, f"{args[:4]} failed:\n{result.stdout}\n{result.stderr}"
    return result


class Venv:
    """A fresh venv with the wheel installed; ``run`` starts its commands in ``home``, an empty
    directory outside the checkout, with no EVENTGATE_* and no PYTHONPATH of ours."""

    def __init__(self, path: Path, home: Path) -> None:
        self.path = path
        self.home = home
        self.pip: subprocess.Popen | None = None
        self.pip_log = path.parent / "pip.log"

    @classmethod
    def install(cls, where: Path, requirement: str, constraints: Path) -> Venv:
        """A new venv under ``where`` whose install of ``requirement`` has started: ``installed``
        waits for it."""
        venv = cls(where / "venv", where / "home")
        venv.home.mkdir()
        run([sys.executable, "-m", "venv", "--without-pip", str(venv.path)], where, venv.env(), 60)
        with open(venv.pip_log, "wb") as output:
            venv.pip = subprocess.Popen(
                [sys.executable, "-m", "pip", "--python", venv.bin("python"), "install",
                 "--quiet", "--no-compile", "--constraint", str(constraints), requirement],
                cwd=where, env=venv.env(), stdout=output, stderr=subprocess.STDOUT)
        return venv

    def installed(self) -> Venv:
        """Wait for the install (it must succeed; a failure shows pip's output)."""
        code = self.pip.wait(300)
        assert code == 0, f"pip install failed:\n{self.pip_log.read_text()[-4000:]}"
        return self

    def bin(self, name: str) -> str:
        return str(self.path / "bin" / name)

    def env(self, **settings: str) -> dict[str, str]:
        env = {k: v for k, v in child_env(**settings).items() if k not in _LEAKY_ENV}
        env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
        return env

    def run(self, *args: str, timeout: float = 60, **settings: str):
        """``args`` (the first a command of the venv) in ``home``; returns the finished process,
        whatever its exit status."""
        return subprocess.run([self.bin(args[0]), *args[1:]], cwd=self.home,
                              env=self.env(**settings), capture_output=True, text=True,
                              timeout=timeout)

    def python(self, code: str, **settings: str) -> str:
        """Run ``code`` with the venv's python; returns its stdout (it must succeed)."""
        result = self.run("python", "-c", code, **settings)
        assert result.returncode == 0, result.stderr
        return result.stdout


class Served(Program):
    """``gunicorn APP -c python:CONF`` of a venv, started in its empty home on a free port."""

    def __init__(self, venv: Venv, app: str, conf: str, *flags: str, **settings: str) -> None:
        port = free_port()
        self.url = f"http://{LOOPBACK}:{port}"
        super().__init__(
            [venv.bin("gunicorn"), app, "-c", conf, "--bind", f"{LOOPBACK}:{port}",
             "--workers", "1", "--graceful-timeout", "5",
             "--control-socket", str(venv.home / f"gunicorn-{port}.ctl"), *flags],
            venv.home / f"gunicorn-{port}.log", port=port, cwd=venv.home,
            env=venv.env(**settings),
        )
        self.start()

    def ready(self, check: Callable[[], object], what: str) -> Served:
        """Wait (30 s at most) until ``check()`` is true; fails at once if gunicorn exits."""
        self.wait_until(check, 30, what)
        return self


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel, built from a copy of the checkout's files: setuptools leaves a build/ folder in
    the tree it builds, and a file that folder kept from an earlier build would ship again."""
    work = tmp_path_factory.mktemp("wheel")
    shutil.copytree(ROOT, work / "source", ignore=_NOT_SOURCE)
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir",
         str(work / "dist"), str(work / "source")], work, {**os.environ}, 300)
    [built] = (work / "dist").glob("eventgate-*.whl")
    return built


@pytest.fixture(scope="module")
def constraints(wheel, tmp_path_factory) -> Path:
    """The test venv's distributions at their versions (eventgate aside), a hint for pip's cache:
    a version the wheel's own requirements exclude (``make test-latest`` installs such) is left
    out, so the venvs get what a user's pip would choose."""
    with zipfile.ZipFile(wheel) as archive:
        [meta] = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        requires = email.message_from_bytes(archive.read(meta)).get_all("Requires-Dist") or []
    wanted = [Requirement(line) for line in requires]
    pins = set()
    for dist in metadata.distributions():
        name = canonicalize_name(dist.metadata["Name"] or "")
        if name and name != "eventgate" and all(
                dist.version in r.specifier for r in wanted if canonicalize_name(r.name) == name):
            pins.add(f"{name}=={dist.version}")
    path = tmp_path_factory.mktemp("constraints") / "constraints.txt"
    path.write_text("\n".join(sorted(pins)) + "\n")
    return path


@pytest.fixture(scope="module")
def venvs(wheel, constraints, tmp_path_factory) -> dict[str, Venv]:
    """``base``: ``pip install eventgate`` (the publishing side only); ``server``:
    ``pip install "eventgate[server]"`` (the pools and the stack). Installed at the same time."""
    started = {
        "base": Venv.install(tmp_path_factory.mktemp("base"), str(wheel), constraints),
        "server": Venv.install(tmp_path_factory.mktemp("server"), f"{wheel}[server]",
                               constraints),
    }
    for venv in started.values():  # both end before any fails the fixture
        venv.pip.wait(300)
    return {name: venv.installed() for name, venv in started.items()}


@pytest.fixture(scope="module")
def base_venv(venvs) -> Venv:
    return venvs["base"]


@pytest.fixture(scope="module")
def server_venv(venvs) -> Venv:
    return venvs["server"]


@pytest.fixture
def serve(server_venv):
    """Factory: ``serve(app, conf, *flags, **EVENTGATE settings)`` starts a pool of the server
    venv (stopped after the test); wait on it with ``.ready(check, what)``."""
    started: list[Served] = []

    def make(app: str, conf: str, *flags: str, **settings: str) -> Served:
        served = Served(server_venv, app, conf, *flags, **settings)
        started.append(served)
        return served

    yield make
    for served in started:
        served.stop()
