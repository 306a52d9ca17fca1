"""Fixtures of the Cluster tests, on the session's Redis Cluster (tests/conftest.py): the apps
(a stream pool of two workers and a web pool) made once per module, a Publisher, and the web
app in process."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from eventgate.shared.config import Config
from eventgate.shared.publisher import Publisher
from eventgate.web.app import create_app
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


@pytest.fixture(scope="module")
def publisher(redis_cluster):
    return Publisher.from_url(redis_cluster.url)


@pytest.fixture(scope="module")
def cluster_app(redis_cluster, tmp_path_factory, secret_keys, publish_key):
    """The web app (in process, for Flask's test client) with its Redis URL on the cluster."""
    config = Config(
        secret_keys=secret_keys,
        publish_keys=(publish_key,),
        redis_url=redis_cluster.url,
        var_dir=tmp_path_factory.mktemp("var"),
    )
    return create_app(config)
