"""Fixtures for the stream tier: a real gevent gunicorn pool on the session's real Redis."""

from __future__ import annotations

import pytest

from eventgate.shared.config import Config
from eventgate.shared.publisher import Publisher
from eventgate.shared.redisconn import connect
from eventgate.shared.tokens import ChannelTokens
from tests.stream.pool import StreamPool


@pytest.fixture
def make_pool(redis_server, secret_keys, publish_key, tmp_path):
    """Factory: start a stream pool (stopped after the test) with EVENTGATE_* overrides."""
    pools: list[StreamPool] = []

    def make(workers: int = 1, timeout: int = 30, **settings: str) -> StreamPool:
        env = {
            "EVENTGATE_SECRET_KEY": ",".join(secret_keys),
            "EVENTGATE_PUBLISH_KEY": publish_key,
            "EVENTGATE_REDIS_URL": redis_server.url,
            "EVENTGATE_VAR_DIR": str(tmp_path / "var"),
            "EVENTGATE_HEARTBEAT": "1",
            "EVENTGATE_RETRY_MS": "300",
        }
        env.update({f"EVENTGATE_{k.upper()}": str(v) for k, v in settings.items()})
        pool = StreamPool(tmp_path, env, workers, timeout).start()
        pools.append(pool)
        return pool

    yield make
    for pool in pools:
        pool.stop()


@pytest.fixture
def tokens(secret_keys) -> ChannelTokens:
    return ChannelTokens(secret_keys)


@pytest.fixture
def publisher(make_config) -> Publisher:
    config: Config = make_config()
    return Publisher(connect(config), config)
