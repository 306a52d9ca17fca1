"""Fixtures for the history API and rewind: one stream pool for the module (a stream pool per
test would cost a second or more each), the web app on the session's Redis, and the page
comparer."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from flask.testing import FlaskClient

from eventgate.web.app import create_app
from tests.stream.pool import StreamPool, pool_settings


@pytest.fixture(scope="module")
def history_pool(redis_server, secret_keys, publish_key, tmp_path_factory) -> Iterator[StreamPool]:
    """One stream pool (one worker) on the session's Redis, shared by the module's tests."""
    workdir = tmp_path_factory.mktemp("history-pool")
    env = pool_settings(redis_server.url, secret_keys, publish_key, workdir / "var")
    pool = StreamPool(workdir, env).start()
    yield pool
    pool.stop()


@pytest.fixture
def web(make_config) -> FlaskClient:
    """A test client of the web app on the session's Redis."""
    return create_app(make_config()).test_client()


@pytest.fixture
def auth(publish_key) -> dict[str, str]:
    """Headers that carry the publisher key."""
    return {"Authorization": f"Bearer {publish_key}"}
