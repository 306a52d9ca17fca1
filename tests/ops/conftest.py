"""Fixtures for the ops tests: a development Config to render, the production settings for
loopback, the production edge run with the system's nginx, and the environment the Makefile's
targets run in (``make_env``)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from eventgate.deploy.render import Production
from eventgate.shared.config import Config
from tests.ops.makefile import make
from tests.ops.production import (
    ORIGIN,
    Edge,
    StreamNode,
    loopback_production,
    running_edge,
)
from tests.servers import LOOPBACK, child_env, free_port


@pytest.fixture
def config(tmp_path) -> Config:
    """A development Config with fixed ports and keys (nothing is started from it)."""
    return Config(
        secret_keys=("s3cret-signing-key-that-must-not-leak-000000",),
        publish_keys=("publish-key-that-must-not-leak-00000000000000",),
        var_dir=tmp_path / "var",
        port=18080, web_port=18000, stream_port=18001, redis_port=16399,
        redis_url="redis://127.0.0.1:16399/0", heartbeat_seconds=1.5, retry_ms=700,
    )


@pytest.fixture
def production(tmp_path) -> Production:
    """Production settings for loopback, with CORS for ORIGIN."""
    return loopback_production(tmp_path, cors_origins=(ORIGIN,))


@pytest.fixture(scope="module")
def edge(tmp_path_factory, test_ca) -> Iterator[Edge]:
    """The rendered edge under the system's nginx, with tight per-address limits; its web node
    is an Echo, its stream node a port nothing listens on; its certificate the test CA's leaf."""
    with running_edge(
        tmp_path_factory.mktemp("edge"),
        ca=test_ca,
        stream_nodes=(f"{LOOPBACK}:{free_port()}",),  # nothing listens there
        cors_origins=(ORIGIN,), max_event_bytes=1024, max_batch_events=10,
        connections_per_address=3, stream_connect_rate=1, stream_connect_burst=2,
    ) as running:
        yield running


@pytest.fixture(scope="module")
def streaming_edge(tmp_path_factory, test_ca) -> Iterator[tuple[Edge, StreamNode]]:
    """An edge whose one stream node answers (a StreamNode)."""
    node = StreamNode()
    threading.Thread(target=node.serve_forever, daemon=True).start()
    try:
        with running_edge(tmp_path_factory.mktemp("streaming-edge"),
                          stream_nodes=(f"{LOOPBACK}:{node.server_address[1]}",),
                          ca=test_ca) as running:
            yield running, node
    finally:
        node.release.set()
        node.shutdown()
        node.server_close()


@pytest.fixture
def make_env(tmp_path) -> Iterator[dict[str, str]]:
    """The environment for ``make <target>`` (tests/ops/makefile.py): a private var dir, free
    ports and one worker per pool; ``make down`` runs after the test whatever happened."""
    ports = {name: free_port() for name in ("PORT", "WEB_PORT", "STREAM_PORT", "REDIS_PORT")}
    env = child_env(
        EVENTGATE_VAR_DIR=str(tmp_path / "var"),
        EVENTGATE_WEB_WORKERS="1",
        EVENTGATE_STREAM_WORKERS="1",
        **{f"EVENTGATE_{name}": str(port) for name, port in ports.items()},
    )
    for name in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL"):  # when the suite itself runs under make
        env.pop(name, None)
    yield env
    # Whatever happened, stop what this test started.
    make("down", env)
