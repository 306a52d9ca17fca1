"""Fixtures of the Sentinel tests that need no SentinelSet: sentinels where nothing listens, and
a sentinel that names a replica as the primary (a sentinel behind the times, deterministic)."""

from __future__ import annotations

import shutil

import pytest
import redis

from tests.servers import LOOPBACK, RedisServer, free_port


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
