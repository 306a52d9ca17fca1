"""Shared fixtures: real redis-server, PostgreSQL, stream pools and whole stacks on free loopback
ports, the production edge (TLS, HTTP/2) in front of a stack; configs, tokens, a publisher,
unique channel names."""

from __future__ import annotations

import itertools
import secrets
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import replace

import pytest

from eventgate.shared.config import Config
from eventgate.shared.publisher import Publisher
from eventgate.shared.tokens import ChannelTokens
from tests.chromium import chromium_context
from tests.hosts import Host, Network, unavailable
from tests.ops.production import StackEdge, edge_nginx, served_by
from tests.postgres import PostgresServer
from tests.rediscluster import RedisClusterSet
from tests.servers import LOOPBACK, Program, RedisServer, SentinelSet, child_env
from tests.stack import Stack
from tests.stream.pool import StreamPool, pool_settings
from tests.testca import LocalCA, make_local_ca

_counter = itertools.count()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A real PostgreSQL server (tests/postgres.py) for the whole session, started the first
    time a test asks for it (~1.5 s, initdb included). Tests take a database of their own
    through ``postgres_url``."""
    server = PostgresServer().start()
    yield server
    server.stop()


@pytest.fixture
def postgres_url(postgres_server) -> Iterator[str]:
    """The SQLAlchemy URL (psycopg 3 driver) of a fresh, empty database of this test's own on
    the session's PostgreSQL; dropped after the test, connections left open or not."""
    name = f"test_{next(_counter)}_{secrets.token_hex(4)}"
    postgres_server.create_database(name)
    yield postgres_server.url(name)
    postgres_server.drop_database(name)


@pytest.fixture
def make_redis_server(tmp_path):
    """Factory: ``make_redis_server(*extra_args)`` → a private redis-server (tests/servers.py),
    started, with extra command-line settings (``"--maxmemory", "2mb"``); stopped after the
    test. ``host=`` (a tests/hosts.py Host) runs it there, on that host's address, open to the
    other hosts (protected mode off)."""
    started: list[RedisServer] = []

    def make(*extra: str, host: Host | None = None) -> RedisServer:
        workdir = tmp_path / f"redis-{len(started)}"
        if host is None:
            server = RedisServer(workdir, extra=extra)
        else:
            server = RedisServer(workdir, port=host.take_port(), host=host.address,
                                 prefix=host.prefix, extra=("--protected-mode", "no", *extra))
        started.append(server)
        server.start()
        return server

    yield make
    for server in started:
        server.stop()


@pytest.fixture(scope="module")
def sentinel_set(tmp_path_factory):
    """A real Sentinel deployment (tests/servers.py:SentinelSet: a primary, two replicas, three
    sentinels) for one test module. A test that fails it over calls ``restore()`` after."""
    deployment = SentinelSet(tmp_path_factory.mktemp("sentinel")).start()
    yield deployment
    deployment.stop()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory):
    """A real Redis Cluster (tests/rediscluster.py:RedisClusterSet: three primaries, a replica
    each, ~2 s to create) for the whole session.

    Session scope because every fault it takes has an undo that leaves it healthy: ``restore()``
    starts killed nodes again and finishes half-done migrations; a slot moved stays moved, which
    is healthy too. So tests must not assume which node serves what (ask ``primary_of_slot``),
    and a test that kills nodes or moves slots takes it through ``cluster_faults``, which
    restores it after the test, failed or not. The teardown checks (pgrep) that no node is left.
    """
    deployment = RedisClusterSet(tmp_path_factory.mktemp("cluster")).start()
    yield deployment
    deployment.stop()
    assert not deployment.leftovers(), f"cluster nodes left running:\n{deployment.leftovers()}"


@pytest.fixture
def cluster_faults(redis_cluster):
    """The session's Redis Cluster for a test that faults it: restored (every node running, no
    migration open, healthy) after the test even if it failed."""
    yield redis_cluster
    redis_cluster.restore()


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
def make_program(tmp_path):
    """Factory: ``make_program(argv, name, port=None, **options)`` starts a Program (see
    tests/servers.py) whose output goes to ``<tmp_path>/<name>.log``; all are stopped after the
    test."""
    started: list[Program] = []

    def make(argv: Sequence[object], name: str, **options) -> Program:
        program = Program(argv, tmp_path / f"{name}.log", **options)
        started.append(program)
        return program.start()

    yield make
    for program in started:
        program.stop()


@pytest.fixture
def make_pool(redis_server, secret_keys, publish_key, tmp_path):
    """Factory: start a stream pool (tests/stream/pool.py; stopped after the test) on the
    session's redis, with EVENTGATE_* overrides: ``make_pool(workers=2, heartbeat="5")``;
    ``connected=False`` returns once a worker answers, Redis reachable or not. ``host`` (a
    tests/hosts.py Host) runs it there: give it a ``redis_url`` that host reaches."""
    pools: list[StreamPool] = []

    def make(
        workers: int = 1, timeout: int = 30, *, connected: bool = True,
        host: Host | None = None, **settings: str
    ) -> StreamPool:
        env = pool_settings(redis_server.url, secret_keys, publish_key, tmp_path / "var",
                            **settings)
        pool = StreamPool(tmp_path, env, workers, timeout, host)
        pools.append(pool)
        pool.start(connected)
        return pool

    yield make
    for pool in pools:
        pool.stop()


@pytest.fixture
def tokens(secret_keys) -> ChannelTokens:
    """Signs stream tokens with the session's key (what ``make_pool``'s pools verify)."""
    return ChannelTokens(secret_keys)


@pytest.fixture
def publisher(make_config) -> Iterator[Publisher]:
    """A Publisher on the session's redis; its client is closed after the test."""
    publisher = Publisher.from_config(make_config())
    yield publisher
    publisher.client.close()


@pytest.fixture
def channel() -> str:
    """A channel name no other test uses."""
    return f"test.{next(_counter)}.{secrets.token_hex(4)}"


# -- a browser, TLS ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """A real headless Chromium context (its own user-data-dir) for one test module;
    ``browser.new_page()`` opens a tab (tests/chromium.py)."""
    with chromium_context(tmp_path_factory.mktemp("chromium-profile")) as context:
        yield context


@pytest.fixture(scope="session")
def test_ca(tmp_path_factory) -> LocalCA:
    """A test CA and a leaf certificate for 127.0.0.1 and localhost signed by it
    (tests/testca.py), for every TLS server of the session."""
    return make_local_ca(tmp_path_factory.mktemp("test-ca"))


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


# -- hosts (tests/hosts.py) ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def network() -> Iterator[Network]:
    """Hosts for one test module (tests/hosts.py): ``network.add_host("redis-1")`` gives a
    network namespace with its own 127.X address; ``network.local`` is the test process's own
    host, where nginx runs. Skipped without root. At teardown everything is removed; a process
    the module left running in a host is killed and fails the teardown."""
    reason = unavailable()
    if reason:
        pytest.skip(reason)
    hosts = Network().open()
    yield hosts
    killed = hosts.close()
    assert not killed, f"processes left running in the module's hosts (killed): {killed}"


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


@pytest.fixture(scope="module")
def stack_edge(stack, test_ca, tmp_path_factory) -> Iterator[StackEdge]:
    """deploy/production/'s edge rendered for loopback, run by the system's nginx, its upstreams
    the module's stack's web and stream pools, its certificate the test CA's leaf."""
    with edge_nginx(
        tmp_path_factory.mktemp("stack-edge"),
        web_nodes=(f"{LOOPBACK}:{stack.web_port}",),
        stream_nodes=(f"{LOOPBACK}:{stack.stream_port}",),
        **served_by(test_ca),
    ) as (production, nginx):
        yield StackEdge(production, nginx)
