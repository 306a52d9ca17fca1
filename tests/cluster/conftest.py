"""Fixtures of the Cluster tests: the apps (a stream pool of two workers and a web pool) on the
session's Redis Cluster, made once per module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.ha.apps import WebPool
from tests.stream.pool import StreamPool


@pytest.fixture(scope="module")
def cluster_apps(redis_cluster, secret_keys, publish_key, tmp_path_factory
                 ) -> Iterator[tuple[StreamPool, WebPool]]:
    """A stream pool (two gevent workers) and a web pool on ``redis_cluster.url``, for the
    whole module: they must follow the cluster through every test's fault on their own."""
    workdir = tmp_path_factory.mktemp("cluster-apps")
    settings = {
        "EVENTGATE_SECRET_KEY": ",".join(secret_keys),
        "EVENTGATE_PUBLISH_KEY": publish_key,
        "EVENTGATE_REDIS_URL": redis_cluster.url,
        "EVENTGATE_HEARTBEAT": "1",
        "EVENTGATE_RETRY_MS": "300",
    }
    started: list = []
    try:
        started.append(StreamPool(workdir, {**settings, "EVENTGATE_VAR_DIR": str(
            workdir / "stream")}, workers=2).start())
        started.append(WebPool(workdir, {**settings, "EVENTGATE_VAR_DIR": str(
            workdir / "web")}).start())
        yield started[0], started[1]
    finally:
        for pool in started:
            pool.stop()
