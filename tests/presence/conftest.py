"""Fixtures for presence: two one-worker stream pools on the session's Redis (two workers whose
streams share channels, one of which a test may kill -9), announcing joins and leaves on
``room.*`` with a short grace period, and a web app of the same settings for the API."""

from __future__ import annotations

from dataclasses import replace

import pytest

from eventgate.web.app import create_app
from tests.presence.rooms import GRACE_SECONDS, PATTERN, Rooms
from tests.stream.pool import StreamPool, pool_settings


@pytest.fixture(scope="module")
def presence_pools(redis_server, secret_keys, publish_key, tmp_path_factory):
    """Two stream pools (one worker each) announcing presence on ``room.*``."""
    workdir = tmp_path_factory.mktemp("presence")
    env = pool_settings(redis_server.url, secret_keys, publish_key, workdir / "var",
                        presence_channels=PATTERN, presence_grace_seconds=str(GRACE_SECONDS))
    pools = [StreamPool(workdir / name, env) for name in ("one", "two")]
    for pool in pools:
        pool.workdir.mkdir()
    try:
        for pool in pools:
            pool.start()
        yield pools
    finally:
        for pool in pools:
            pool.stop()


@pytest.fixture
def rooms(presence_pools, make_config, publish_key, tokens, redis_server):
    """Opens streams on the pools, reads the presence API and the channel's log."""
    config = replace(make_config(), presence_channels=(PATTERN,),
                     presence_grace_seconds=GRACE_SECONDS)
    rooms = Rooms(presence_pools, create_app(config).test_client(), publish_key, tokens,
                  redis_server.client())
    yield rooms
    rooms.close()
