"""The package's architecture, checked on the source with ``ast`` (so it covers every file that
exists, imported by a test or not):

- one import name: code imports ``eventgate.…`` only, never a bare ``web`` / ``stream`` /
  ``shared`` / ``deploy`` (the repository's folders, which a checkout could also put on
  ``sys.path``: a module reachable under two names is loaded twice, with two copies of its state);
- direction (style.md): web → shared, stream → shared; web and stream never import each other;
  shared imports neither Flask nor gevent (safe in every process);
- the fence: in shared/, only pools.py imports gunicorn or prometheus_client, so a
  publishing-only install (neither is in it) can import the rest, logformat.py included;
- nobody inside the package imports its public face (``eventgate/__init__.py``), which only
  re-exports: importing it from inside would make the facade a dependency of its own parts.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: folder in the repository → its name in the package
SUBPACKAGES = {
    "eventgate": ["eventgate"],
    "shared": ["eventgate", "shared"],
    "web": ["eventgate", "web"],
    "stream": ["eventgate", "stream"],
    "deploy": ["eventgate", "deploy"],
}
BARE = {"web", "stream", "shared", "deploy"}

# folder → modules (by full dotted prefix) it must never import
FORBIDDEN = {
    "web": {"eventgate.stream"},
    "stream": {"eventgate.web"},
    # werkzeug is Flask's own stack and greenlet is gevent's: same reason as their parents
    "shared": {
        "flask", "werkzeug", "gevent", "greenlet", "eventgate.web", "eventgate.stream",
        "eventgate.deploy",
    },
    "deploy": {"flask", "werkzeug", "gevent", "greenlet", "eventgate.web", "eventgate.stream"},
    # the public face and the command line run on the base install, which has no gevent
    # (tests/cli/test_extras.py: importing eventgate.cli loads nothing of the server extra)
    "eventgate": {"eventgate.stream", "gevent", "greenlet"},
}

#: The server side's plumbing (the ``server`` extra) and the one module of shared/ that may import
#: it. shared/logformat.py formats gunicorn's access line but stays outside: the apps log through
#: it when no gunicorn runs them (tests, ``flask run``), and gunicorn's Logger subclasses are in
#: pools.py.
FENCED = {"gunicorn", "prometheus_client"}
FENCE_KEEPER = "shared/pools.py"


def python_files(folder: str) -> list[Path]:
    return sorted(p for p in (ROOT / folder).rglob("*.py") if "__pycache__" not in p.parts)


def imported_modules(source: str, package: list[str]) -> set[str]:
    """Absolute names of every module ``source`` (a module of ``package``) imports, relative
    imports resolved; also ``importlib.import_module("...")`` / ``__import__("...")`` with a
    literal name."""
    tree = ast.parse(source)
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                module = ".".join([*base, *([node.module] if node.module else [])])
                names.add(module)
                names.update(f"{module}.{alias.name}" for alias in node.names)
            elif node.module:
                names.add(node.module)
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            first = node.args[0]
            literal = isinstance(first, ast.Constant) and isinstance(first.value, str)
            if called in {"import_module", "__import__"} and literal:
                names.add(first.value)
    return names


def _matches(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def module_package(path: Path) -> list[str]:
    """The dotted package of a file: web/api/events.py → eventgate.web.api."""
    folder, *rest = path.relative_to(ROOT).parts[:-1]
    return [*SUBPACKAGES.get(folder, [folder]), *rest]


def violations(folder: str, forbidden: set[str], exempt: frozenset[str] = frozenset()) -> list[str]:
    """``<file> imports <module>`` for every import of ``forbidden`` in ``folder``, except in the
    files named in ``exempt`` (paths from the repository's root)."""
    found = []
    for path in python_files(folder):
        if path.relative_to(ROOT).as_posix() in exempt:
            continue
        source = path.read_text(encoding="utf-8")
        for name in sorted(imported_modules(source, module_package(path))):
            if any(_matches(name, bad) for bad in forbidden):
                found.append(f"{path.relative_to(ROOT)} imports {name}")
    return found


@pytest.mark.parametrize("folder", sorted(FORBIDDEN))
def test_package_direction(folder):
    assert python_files(folder), f"{folder}/ has no Python files"
    assert violations(folder, FORBIDDEN[folder]) == []


def test_only_pools_imports_gunicorn_or_prometheus_in_shared():
    assert (ROOT / FENCE_KEEPER).is_file()
    assert violations("shared", FENCED, exempt=frozenset({FENCE_KEEPER})) == []


@pytest.mark.parametrize("folder", [*sorted(SUBPACKAGES), "tests", "bench"])
def test_one_import_name(folder):
    assert violations(folder, BARE) == [], "import through eventgate.… only"


@pytest.mark.parametrize("folder", sorted(BARE))
def test_nobody_inside_imports_the_public_face(folder):
    found = []
    for path in python_files(folder):
        source = path.read_text(encoding="utf-8")
        if "eventgate" in imported_modules(source, module_package(path)):
            found.append(str(path.relative_to(ROOT)))
    assert found == []


def test_package_init_files_hold_no_code():
    """Code lives in named modules (app.py, …); an __init__ that ran code would run it on every
    import of a sibling (the gunicorn master imports eventgate.stream.gunicorn_conf)."""
    holding = []
    for folder in BARE:
        for path in (ROOT / folder).rglob("__init__.py"):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            body = [n for n in tree.body if not (isinstance(n, ast.Expr)
                                                 and isinstance(n.value, ast.Constant))]
            if body:
                holding.append(str(path.relative_to(ROOT)))
    assert holding == []


def test_the_checker_sees_imports():
    # guard against a checker that passes because it finds nothing
    source = (
        "import flask\n"
        "import gevent.monkey as m\n"
        "from werkzeug.wrappers import Response\n"
        "from .. import stream\n"
        "from ..stream import hub\n"
        "from . import sibling\n"
        "import importlib\n"
        "importlib.import_module('stream.views')\n"
        "__import__('web')\n"
    )
    assert imported_modules(source, ["eventgate", "web", "api"]) == {
        "flask",
        "gevent.monkey",
        "werkzeug.wrappers",
        "eventgate.web",
        "eventgate.web.stream",
        "eventgate.web.stream.hub",
        "eventgate.web.api",
        "eventgate.web.api.sibling",
        "importlib",
        "stream.views",
        "web",
    }
    assert module_package(ROOT / "web" / "api" / "events.py") == ["eventgate", "web", "api"]
    assert imported_modules("from .. import stream", ["eventgate", "web"]) >= {"eventgate.stream"}
    real = ROOT / "shared" / "publisher.py"
    assert {"redis", "eventgate.shared.events"} <= imported_modules(
        real.read_text(), module_package(real)
    )
    # the fence fires on a real file: pools.py is what the exemption lets through
    fenced = violations("shared", FENCED)
    assert {line.split()[0] for line in fenced} == {FENCE_KEEPER}
    assert "shared/pools.py imports prometheus_client" in fenced
    assert any(_matches(name, "gunicorn") for name in imported_modules(
        "from gunicorn.glogging import Logger", ["eventgate", "shared"]))
    assert _matches("eventgate.stream.hub", "eventgate.stream")
    assert not _matches("eventgate.streams", "eventgate.stream")


def run_python(code: str) -> str:
    """``code``'s output, run in a fresh interpreter (imports already done here do not count)."""
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_importing_shared_loads_neither_flask_nor_gevent():
    modules = sorted(p.stem for p in python_files("shared") if p.stem != "__init__")
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module('eventgate.shared.' + name)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'flask', 'werkzeug', 'gevent', 'greenlet', 'web', 'stream', 'shared'} "
        "or m.startswith(('eventgate.web', 'eventgate.stream')))\n"
        "print(','.join(bad))\n"
    )
    loaded = run_python(code)
    assert loaded == "", f"importing shared loaded: {loaded}"


def test_a_publishing_only_install_imports_without_the_server_extra():
    """What the base install needs — the Flask extension and shared/ (all but pools.py) — loads
    with gunicorn, prometheus_client, gevent and supervisor made unimportable, as they are
    without ``eventgate[server]``; pools.py does not, which shows the block works."""
    modules = sorted(p.stem for p in python_files("shared")
                     if p.stem != "__init__" and f"shared/{p.name}" != FENCE_KEEPER)
    code = (
        "import importlib, sys\n"
        "for blocked in ('gunicorn', 'prometheus_client', 'gevent', 'supervisor'):\n"
        "    sys.modules[blocked] = None  # import raises ImportError\n"
        "import eventgate.web.extension\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module('eventgate.shared.' + name)\n"
        "try:\n"
        "    import eventgate.shared.pools\n"
        "except ImportError:\n"
        "    print('blocked')\n"
    )
    assert run_python(code) == "blocked"
    assert "logformat" in modules and "status" in modules and "config" in modules


def test_a_channels_log_is_read_in_one_module():
    """shared/events.py is the one place that reads a channel's log (XRANGE/XREVRANGE) and knows
    an entry's fields; resume, backfill and the CLI's replay all go through it. The one other
    reader is ``eventgate migrate`` (eventgate/logcopy.py): it copies entries verbatim, by key
    of either key form, a batch of logs per pipeline, and reads their fields through events.py."""
    readers = []
    for folder in BARE | {"eventgate"}:
        for path in python_files(folder):
            source = path.read_text(encoding="utf-8")
            if ".xrange(" in source or ".xrevrange(" in source:
                readers.append(str(path.relative_to(ROOT)))
    assert sorted(readers) == ["eventgate/logcopy.py", "shared/events.py"]
