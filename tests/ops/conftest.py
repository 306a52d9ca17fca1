"""Fixtures for the ops tests: a development Config to render, the production settings for
loopback, and the production edge run with the system's nginx."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator

import pytest

from eventgate.deploy.production import Production, render_production
from eventgate.shared.config import Config
from tests.ops.production import ORIGIN, PATH, Echo, Edge, loopback_production
from tests.servers import LOOPBACK, Program, free_port, port_open


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
def edge(tmp_path_factory) -> Iterator[Edge]:
    """The rendered edge under the system's nginx, with tight per-address limits; its web node
    is an Echo, its stream node a port nothing listens on."""
    if shutil.which("nginx", path=PATH) is None:
        pytest.skip("nginx is not installed")
    tmp = tmp_path_factory.mktemp("edge")
    echo = Echo()
    threading.Thread(target=echo.serve_forever, daemon=True).start()
    production = loopback_production(
        tmp,
        stream_nodes=(f"{LOOPBACK}:{free_port()}",),  # nothing listens there
        web_nodes=(f"{LOOPBACK}:{echo.server_address[1]}",),
        listen_address=LOOPBACK, http_port=free_port(), https_port=free_port(),
        streams_per_nginx_worker=256, cors_origins=(ORIGIN,),
        max_event_bytes=1024, max_batch_events=10,
        connections_per_address=3, stream_connect_rate=1, stream_connect_burst=2,
    )
    render_production(production, tmp / "out")
    nginx = Program(
        ["nginx", "-c", tmp / "out" / "nginx" / "nginx.conf", "-p", production.nginx_temp_dir,
         "-g", "daemon off;"],
        tmp / "nginx.out", port=production.https_port, env={"PATH": PATH},
    ).start()
    try:
        nginx.wait_until(lambda: port_open(production.https_port)
                         and port_open(production.http_port), 15, "the edge nginx to listen")
        yield Edge(production, echo, nginx)
    finally:
        echo.release.set()
        nginx.stop()
        echo.shutdown()
        echo.server_close()
