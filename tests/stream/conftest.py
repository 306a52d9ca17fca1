"""Fixtures for the stream tier (the pool itself, ``make_pool``, is in tests/conftest.py)."""

from __future__ import annotations

import pytest

from tests.servers import LOOPBACK, child_env, free_port, venv_tool
from tests.stack import REPO_ROOT, http_get
from tests.stream.pool import StreamPool


@pytest.fixture
def cors_origin() -> str:
    """The one origin ``cors_pool`` allows cross-origin streams from."""
    return "http://app.example"


@pytest.fixture
def cors_pool(make_pool, cors_origin) -> StreamPool:
    """A pool with CORS for ``cors_origin`` and at most two channels per stream."""
    return make_pool(cors_origins=cors_origin, max_channels="2")


@pytest.fixture
def example_app(make_program, redis_server, secret_keys, publish_key, tmp_path) -> str:
    """docs/example_app.py under gunicorn on the session's redis; its base URL."""
    port = free_port()
    program = make_program(
        [venv_tool("gunicorn"), "--chdir", REPO_ROOT / "docs", "--bind", f"{LOOPBACK}:{port}",
         "--workers", "1", "--control-socket", tmp_path / "example.ctl", "example_app:app"],
        "example", port=port, cwd=tmp_path, env=child_env(
            EVENTGATE_SECRET_KEY=",".join(secret_keys), EVENTGATE_PUBLISH_KEY=publish_key,
            EVENTGATE_REDIS_URL=redis_server.url, EVENTGATE_VAR_DIR=str(tmp_path / "var"),
            # the repository's packages, as an installed eventgate would provide them
            PYTHONPATH=str(REPO_ROOT),
        ),
    )
    base = f"http://{LOOPBACK}:{port}"
    program.wait_until(lambda: http_get(f"{base}/nothing")[0] == 404, 20, "the example app")
    return base
