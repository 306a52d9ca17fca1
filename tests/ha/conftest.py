"""Fixtures for the failover tests: the apps on the module's Sentinel set, and the set made
healthy again after each test's fault."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.ha.apps import Apps, WebPool
from tests.ha.scenario import Scenario
from tests.servers import SentinelSet
from tests.stream.pool import StreamPool


@pytest.fixture(scope="module")
def ha_apps(sentinel_set, secret_keys, publish_key, tmp_path_factory) -> Iterator[Apps]:
    """A stream pool, a web pool and a durable web pool, all on ``sentinel_set.url``, for the
    whole module: they must follow the primary through every test's failover on their own."""
    workdir = tmp_path_factory.mktemp("ha")

    def settings(name: str, **extra: str) -> dict[str, str]:
        return {
            "EVENTGATE_SECRET_KEY": ",".join(secret_keys),
            "EVENTGATE_PUBLISH_KEY": publish_key,
            "EVENTGATE_REDIS_URL": sentinel_set.url,
            "EVENTGATE_VAR_DIR": str(workdir / name),
            "EVENTGATE_HEARTBEAT": "1",
            "EVENTGATE_RETRY_MS": "300",
            **extra,
        }

    started: list = []
    try:
        started.append(StreamPool(workdir, settings("stream")).start())
        started.append(WebPool(workdir, settings("web")).start())
        started.append(
            WebPool(workdir, settings("durable", EVENTGATE_DURABLE_REPLICAS="1")).start())
        apps = Apps(*started)
        yield apps
    finally:
        for pool in started:
            pool.stop()


@pytest.fixture
def failover_set(sentinel_set) -> Iterator[SentinelSet]:
    """The module's Sentinel set, healthy; restored after the test (stopped nodes started
    again as replicas of whoever is primary now), so that the next test starts healthy."""
    sentinel_set.wait_healthy()
    yield sentinel_set
    sentinel_set.restore()


@pytest.fixture
def scenario(ha_apps, failover_set, tokens, publish_key, channel) -> Iterator[Scenario]:
    """Clients connected and both publishers under way on channels of this test's own
    (tests/ha/scenario.py); everything it started is stopped after the test, before the set
    is restored."""
    running = Scenario(ha_apps, failover_set, tokens, publish_key, channel)
    try:
        yield running.start()
    finally:
        running.stop()
