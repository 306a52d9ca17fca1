"""A Redis Cluster (three primaries, one replica each) for this directory's tests, a Publisher
and the web app on it."""

from __future__ import annotations

import pytest

from eventgate.shared.config import Config
from eventgate.shared.publisher import Publisher
from eventgate.web.app import create_app
from tests.cluster.scratchcluster import ScratchCluster


@pytest.fixture(scope="module")
def redis_cluster(tmp_path_factory):
    cluster = ScratchCluster(tmp_path_factory.mktemp("cluster"))
    try:
        yield cluster.start()
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def publisher(redis_cluster):
    return Publisher.from_url(redis_cluster.url)


@pytest.fixture(scope="module")
def cluster_app(redis_cluster, tmp_path_factory, secret_keys, publish_key):
    """The web app with its Redis URL on the cluster."""
    config = Config(
        secret_keys=secret_keys,
        publish_keys=(publish_key,),
        redis_url=redis_cluster.url,
        var_dir=tmp_path_factory.mktemp("var"),
    )
    return create_app(config)
