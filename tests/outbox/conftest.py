"""Fixtures for the outbox tests."""

from __future__ import annotations

import pytest

from tests.outbox.exampleapp import ExampleApp
from tests.servers import LOOPBACK, child_env, free_port
from tests.stack import REPO_ROOT
from tests.stream.pool import StreamPool, pool_settings


@pytest.fixture(scope="module")
def example_app(redis_server, secret_keys, publish_key, tmp_path_factory):
    """docs/example_app.py under gunicorn (its tables created, SQLite) on the session's Redis,
    with a stream pool of its own that its pages may open streams on (CORS), for one test
    module (~4 s to start both): tests tell their orders apart by id."""
    workdir = tmp_path_factory.mktemp("example")
    port = free_port()
    pool = StreamPool(workdir, pool_settings(
        redis_server.url, secret_keys, publish_key, workdir / "var",
        cors_origins=f"http://{LOOPBACK}:{port}"))
    env = child_env(
        EVENTGATE_SECRET_KEY=",".join(secret_keys), EVENTGATE_PUBLISH_KEY=publish_key,
        EVENTGATE_REDIS_URL=redis_server.url, EVENTGATE_VAR_DIR=str(workdir / "var"),
        # the repository's packages, as an installed eventgate would provide them
        PYTHONPATH=str(REPO_ROOT),
    )
    try:
        pool.start()
        app = ExampleApp.start(port, f"http://{LOOPBACK}:{pool.port}/streams", workdir, env,
                               redis_server.client())
        yield app
        app.stop()
    finally:
        pool.stop()
