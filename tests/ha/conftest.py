"""Fixtures of the Sentinel tests: sentinels where nothing listens and a sentinel that names a
replica as the primary (a sentinel behind the times, deterministic), which need no SentinelSet;
and for the failover tests, the apps on the module's Sentinel set and the set made healthy again
after each test's fault."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest
import redis

from tests.ha.apps import Apps, WebPool
from tests.ha.scenario import Scenario
from tests.servers import LOOPBACK, RedisServer, SentinelSet, free_port
from tests.stream.pool import StreamPool


@pytest.fixture
def dead_sentinels_url() -> str:
    """A Sentinel URL whose two sentinels' ports have nothing listening: refused at once."""
    return f"redis+sentinel://{LOOPBACK}:{free_port()},{LOOPBACK}:{free_port()}/eventgate/0"


@pytest.fixture
def replica_named_primary_url(tmp_path, make_program):
    """A Sentinel URL whose one sentinel monitors a replica as if it were the primary: it names
    it (flags ``master``), and the replica answers ROLE as a replica and refuses writes."""
    primary = RedisServer(tmp_path / "primary")
    primary.workdir.mkdir()
    primary.start()
    replica = RedisServer(tmp_path / "replica", extra=("--replicaof", LOOPBACK, str(primary.port)))
    replica.workdir.mkdir()
    replica.start()
    port = free_port()
    folder = tmp_path / "sentinel"
    folder.mkdir()
    conf = folder / "sentinel.conf"
    conf.write_text(f"port {port}\nbind {LOOPBACK}\ndir {folder}\n"
                    f"sentinel monitor eventgate {LOOPBACK} {replica.port} 1\n")
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    sentinel = make_program([binary, conf, "--sentinel"], "sentinel", port=port)
    sentinel.wait_until(lambda: redis.Redis(host=LOOPBACK, port=port).ping(), 10, "the sentinel")
    yield f"redis+sentinel://{LOOPBACK}:{port}/eventgate/0"
    replica.stop()
    primary.stop()


@pytest.fixture
def two_nodes(tmp_path):
    """Two independent Redis servers (no replication yet): a test makes one the other's replica
    as a managed Redis moving its primary endpoint would."""
    nodes = [RedisServer(tmp_path / name) for name in ("a", "b")]
    for node in nodes:
        node.workdir.mkdir()
        node.start()
    yield nodes
    for node in nodes:
        node.stop()


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
