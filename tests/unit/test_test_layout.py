"""The test suite's own layout, checked on the source with ``ast``: fixtures live in conftest.py
files only, and no test module imports another.

A fixture defined in a test module is invisible to its neighbours, so the next test that needs it
imports it from there (the import looks unused, ruff removes it, the test breaks) or copies it;
a test module imported by another runs its module-level code twice and ties two files' tests
together. Helpers shared by tests live in plain modules of the folder (tests/ops/makefile.py,
tests/unit/subscription.py, …); fixtures in the folder's conftest.py.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TESTS = ROOT / "tests"


def suite_modules() -> list[Path]:
    return sorted(p for p in TESTS.rglob("test_*.py") if "__pycache__" not in p.parts)


def _is_fixture(decorator: ast.expr) -> bool:
    """``@pytest.fixture``, ``@pytest.fixture(...)``, ``@fixture`` (from pytest), and the old
    ``yield_fixture`` spellings."""
    target = decorator.func if isinstance(decorator, ast.Call) else decorator
    name = target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", "")
    return name in {"fixture", "yield_fixture"}


def fixtures_defined(source: str) -> list[str]:
    """The names of the functions in ``source`` decorated as pytest fixtures (at any depth)."""
    return [
        node.name
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and any(_is_fixture(decorator) for decorator in node.decorator_list)
    ]


def imports_of_test_modules(source: str, package: list[str]) -> list[str]:
    """Every module name ``source`` (a module of ``package``) imports that names a test module
    (a part ``test_…``): ``import a.test_x``, ``from a.test_x import y``, ``from a import
    test_x``, ``from .test_x import y``, ``from . import test_x``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            names = [module, *(f"{module}.{alias.name}" for alias in node.names)]
        else:
            continue
        found.extend(name for name in names
                     if any(part.startswith("test_") for part in name.split(".")))
    return sorted(set(found))


def _package(path: Path) -> list[str]:
    return list(path.relative_to(ROOT).parts[:-1])


def test_no_test_module_defines_a_fixture():
    found = [f"{path.relative_to(ROOT)}: {name}"
             for path in suite_modules()
             for name in fixtures_defined(path.read_text(encoding="utf-8"))]
    assert found == [], "move these to the conftest.py of the module's folder"


def test_no_test_module_imports_another():
    found = [f"{path.relative_to(ROOT)} imports {name}"
             for path in suite_modules()
             for name in imports_of_test_modules(path.read_text(encoding="utf-8"), _package(path))]
    assert found == [], "move what is shared to a helper module or a conftest.py"


def test_the_layout_checker_sees_fixtures_and_test_imports():
    # guard against a checker that passes because it finds nothing
    assert len(suite_modules()) > 50 and Path(__file__) in suite_modules()
    source = (
        "import pytest\n"
        "from pytest import fixture\n"
        "@pytest.fixture\n"
        "def plain(): ...\n"
        "@pytest.fixture(scope='module')\n"
        "def called(): ...\n"
        "@fixture\n"
        "async def imported(): ...\n"
        "class Grouped:\n"
        "    @pytest.fixture\n"
        "    def method(self): ...\n"
        "@pytest.mark.parametrize('x', [1])\n"
        "def test_not_a_fixture(x): ...\n"
        "def helper(): ...\n"
    )
    assert fixtures_defined(source) == ["plain", "called", "imported", "method"]
    # a real conftest is full of them; the same scan of it must say so
    assert "redis_server" in fixtures_defined((TESTS / "conftest.py").read_text())

    source = (
        "import tests.ops.test_make\n"
        "from tests.ops.test_make import make\n"
        "from tests.web import test_extension as ext\n"
        "from .test_hub import helper\n"
        "from . import test_sse\n"
        "from .. import conftest\n"
        "from tests.servers import wait_for\n"
        "import pytest\n"
    )
    assert imports_of_test_modules(source, ["tests", "unit"]) == [
        "tests.ops.test_make",
        "tests.ops.test_make.make",
        "tests.unit.test_hub",
        "tests.unit.test_hub.helper",
        "tests.unit.test_sse",
        "tests.web.test_extension",
    ]
    assert imports_of_test_modules("from tests.servers import wait_for", ["tests"]) == []
