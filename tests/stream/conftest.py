"""Fixtures for the stream tier (the pool itself, ``make_pool``, is in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.stream.pool import StreamPool, pool_settings


@pytest.fixture(scope="module")
def cors_origin() -> str:
    """The one origin ``cors_pool`` allows cross-origin streams from."""
    return "http://app.example"


@pytest.fixture(scope="module")
def cors_pool(redis_server, secret_keys, publish_key, cors_origin,
              tmp_path_factory) -> Iterator[StreamPool]:
    """A pool with CORS for ``cors_origin`` and at most two channels per stream, for the whole
    module (its tests only make requests, each on channels of its own: a pool per test cost
    ~2.5 s of start and graceful stop each)."""
    workdir = tmp_path_factory.mktemp("cors-pool")
    pool = StreamPool(workdir, pool_settings(redis_server.url, secret_keys, publish_key,
                                             workdir / "var", cors_origins=cors_origin,
                                             max_channels="2"))
    try:
        yield pool.start()
    finally:
        pool.stop()
