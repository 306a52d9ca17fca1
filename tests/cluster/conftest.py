"""Fixtures of the Cluster tests, made once per module: the apps (a stream pool of two workers
and a web pool) on the session's Redis Cluster, a Publisher and the web app in process on it;
and the whole deployment spread over hosts."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from eventgate.shared.config import Config
from eventgate.shared.publisher import Publisher
from eventgate.web.app import create_app
from tests.ha.apps import WebPool
from tests.hosts import Host, Network
from tests.ops.production import Edge, running_edge
from tests.rediscluster import RedisClusterSet
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


@dataclass
class Hosted:
    """The issue's deployment on hosts (network namespaces): a Redis Cluster on three Redis
    hosts (a primary and another shard's replica on each), stream pools on two stream hosts,
    the production edge's nginx in front of them and a web pool on the test's own host."""

    network: Network
    redis_hosts: list[Host]
    stream_hosts: list[Host]
    cluster: RedisClusterSet
    streams: list[StreamPool]
    web: WebPool
    edge: Edge


@pytest.fixture(scope="module")
def hosted(network, secret_keys, publish_key, tmp_path_factory) -> Iterator[Hosted]:
    workdir = tmp_path_factory.mktemp("hosted")
    redis_hosts = [network.add_host(f"redis-{n}") for n in (1, 2, 3)]
    stream_hosts = [network.add_host(f"stream-{n}") for n in (1, 2)]
    # redis-cli --cluster create puts each replica on another host than its primary.
    placed = redis_hosts + redis_hosts
    cluster = RedisClusterSet(workdir / "cluster", hosts=[h.address for h in placed],
                              prefixes=[h.prefix for h in placed])
    settings = {
        "EVENTGATE_SECRET_KEY": ",".join(secret_keys),
        "EVENTGATE_PUBLISH_KEY": publish_key,
        "EVENTGATE_REDIS_URL": cluster.url,
        "EVENTGATE_HEARTBEAT": "1",
        "EVENTGATE_RETRY_MS": "300",
    }
    started: list = []
    with contextlib.ExitStack() as stack:
        stack.callback(lambda: [pool.stop() for pool in reversed(started)])
        cluster.start()
        stack.callback(cluster.stop)
        for host in stream_hosts:
            started.append(StreamPool(workdir, {**settings, "EVENTGATE_VAR_DIR": str(
                workdir / host.name)}, host=host).start())
        web = WebPool(workdir, {**settings, "EVENTGATE_VAR_DIR": str(workdir / "web")}).start()
        started.append(web)
        (workdir / "edge").mkdir()
        # Every test client comes from 127.0.0.1: no per-address limits (a reconnect storm of
        # 24 clients would meet them, and a browser answered 429 never retries).
        edge = stack.enter_context(running_edge(
            workdir / "edge", stream_nodes=tuple(f"{p.address}:{p.port}" for p in started[:2]),
            stream_connect_rate=0, connections_per_address=0))
        yield Hosted(network, redis_hosts, stream_hosts, cluster, started[:2], web, edge)
