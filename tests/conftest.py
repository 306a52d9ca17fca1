"""Shared fixtures: real redis-server on a free loopback port, configs, unique channel names."""

from __future__ import annotations

import itertools
import secrets
from dataclasses import replace

import pytest

from shared.config import Config
from tests.servers import RedisServer

_counter = itertools.count()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def secret_keys() -> tuple[str, ...]:
    return (secrets.token_urlsafe(32),)


@pytest.fixture(scope="session")
def publish_key() -> str:
    return secrets.token_urlsafe(32)


@pytest.fixture
def make_config(redis_server, secret_keys, publish_key, tmp_path):
    """Factory: a Config pointing at the session's redis, with per-test overrides."""

    def make(**overrides) -> Config:
        base = Config(
            secret_keys=secret_keys,
            publish_keys=(publish_key,),
            redis_url=redis_server.url,
            redis_port=redis_server.port,
            var_dir=tmp_path / "var",
            heartbeat_seconds=1.0,
        )
        return replace(base, **overrides)

    return make


@pytest.fixture
def channel() -> str:
    """A channel name no other test uses."""
    return f"test.{next(_counter)}.{secrets.token_hex(4)}"
