"""The package direction (style.md): web → shared, stream → shared; web and stream never import
each other; shared imports neither Flask nor gevent (safe in every process). Checked on the
source with ``ast``, so it covers every file that exists, imported by a test or not."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# package → top-level modules it must never import
FORBIDDEN = {
    "web": {"stream"},
    "stream": {"web"},
    # werkzeug is Flask's own stack and greenlet is gevent's: same reason as their parents
    "shared": {"flask", "werkzeug", "gevent", "greenlet", "web", "stream"},
}


def python_files(package: str) -> list[Path]:
    return sorted(p for p in (ROOT / package).rglob("*.py") if "__pycache__" not in p.parts)


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


def violations(package: str) -> list[str]:
    found = []
    for path in python_files(package):
        source = path.read_text(encoding="utf-8")
        # a module's package: web/api/events.py → web.api; web/api/__init__.py → web.api too
        module_package = list(path.relative_to(ROOT).parts[:-1])
        for name in sorted(imported_modules(source, module_package)):
            if name.split(".")[0] in FORBIDDEN[package]:
                found.append(f"{path.relative_to(ROOT)} imports {name}")
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_direction(package):
    if not python_files(package):
        pytest.skip(f"{package}/ has no Python files yet")
    assert violations(package) == []


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
    assert imported_modules(source, ["web", "api"]) == {
        "flask",
        "gevent.monkey",
        "werkzeug.wrappers",
        "web",
        "web.stream",
        "web.stream.hub",
        "web.api",
        "web.api.sibling",
        "importlib",
        "stream.views",
    }
    assert imported_modules("from . import names", ["shared"]) == {"shared", "shared.names"}
    real = ROOT / "shared" / "publisher.py"
    assert {"redis", "shared.events"} <= imported_modules(real.read_text(), ["shared"])


def test_importing_shared_loads_neither_flask_nor_gevent():
    modules = sorted(p.stem for p in python_files("shared") if p.stem != "__init__")
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module('shared.' + name)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'flask', 'werkzeug', 'gevent', 'greenlet', 'web', 'stream'})\n"
        "print(','.join(bad))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", f"importing shared loaded: {result.stdout.strip()}"
