"""Shared fixtures: real redis-server on a free loopback port, configs, unique channel names."""

from __future__ import annotations

import itertools
import secrets
import subprocess
import sys
from dataclasses import replace

import pytest

from eventgate.shared.config import Config
from tests.servers import RedisServer, child_env
from tests.stack import Stack

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


@pytest.fixture
def run_cli(redis_server, secret_keys, publish_key, tmp_path):
    """``run_cli(*args, **env)``: run ``python -m eventgate.cli`` with settings for the session's
    redis (an env value of None removes that setting)."""

    def run(*args: str, **env: str | None) -> subprocess.CompletedProcess:
        settings = {
            "EVENTGATE_SECRET_KEY": ",".join(secret_keys),
            "EVENTGATE_PUBLISH_KEY": publish_key,
            "EVENTGATE_REDIS_URL": redis_server.url,
            "EVENTGATE_VAR_DIR": str(tmp_path / "var"),
            **env,
        }
        settings = {k: v for k, v in settings.items() if v is not None}
        return subprocess.run(
            [sys.executable, "-m", "eventgate.cli", *args], env=child_env(**settings),
            capture_output=True, text=True, timeout=30,
        )

    return run


# -- the whole stack (tests/stack.py) ------------------------------------------------------------


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "stack(stream_workers=1, web_workers=1, settings=None): options of the module's `stack` "
        "fixture; put it in the module's pytestmark.",
    )


@pytest.fixture(scope="module")
def stack(request, tmp_path_factory):
    """The whole stack (redis, web, stream, nginx under supervisord) for one test module.

    Options come from ``pytestmark = pytest.mark.stack(stream_workers=2,
    settings={"EVENTGATE_HEARTBEAT": "1"})``. Tests must leave its programs running; a test
    that stops or breaks one uses ``make_stack`` instead.
    """
    marker = request.node.get_closest_marker("stack")
    options = dict(marker.kwargs) if marker else {}
    running = Stack(tmp_path_factory.mktemp("stack"), **options).start()
    yield running
    running.stop()


@pytest.fixture
def make_stack(tmp_path_factory):
    """Factory: ``make_stack(stream_workers=1, web_workers=1, settings=None)`` starts a private
    Stack; every one it started is stopped (and checked for leftovers) after the test."""
    started = []

    def make(**options):
        running = Stack(tmp_path_factory.mktemp("stack"), **options).start()
        started.append(running)
        return running

    yield make
    for running in started:
        running.stop()
