"""The stack's own Redis in each EVENTGATE_REDIS_MODE (shared/stackredis.py): its port block, the
URL the apps get, when a URL is the user's own; and Config's refusals of modes, sizes and ports
the stack could not run."""

from __future__ import annotations

from pathlib import Path

import pytest

from eventgate.shared.config import Config
from eventgate.shared.errors import ConfigError
from eventgate.shared.stackredis import StackRedis


def config(var_dir: Path, **values: str) -> Config:
    environ = {"EVENTGATE_VAR_DIR": str(var_dir), "EVENTGATE_SECRET_KEY": "k",
               "EVENTGATE_PUBLISH_KEY": "p"}
    return Config.from_env({**environ, **{f"EVENTGATE_{k}": v for k, v in values.items()}})


def test_single_is_the_default_and_unchanged(var_dir):
    default = config(var_dir)
    assert (default.redis_mode, default.redis_maxmemory) == ("single", "256mb")
    assert default.redis_url == "redis://127.0.0.1:6399/0"
    assert StackRedis("single", 6399).ports == (6399,)


def test_sentinel_mode_takes_six_ports_and_hands_the_apps_a_sentinel_url(var_dir):
    sentinel = config(var_dir, REDIS_MODE="sentinel", REDIS_PORT="7000")
    stack = StackRedis("sentinel", 7000)
    assert stack.data_ports == (7000, 7001, 7002)
    assert stack.sentinel_ports == (7003, 7004, 7005)
    assert sentinel.redis_url == (
        "redis+sentinel://127.0.0.1:7003,127.0.0.1:7004,127.0.0.1:7005/eventgate/0"
    )
    assert stack.serves(sentinel.redis_url)


def test_cluster_mode_takes_twelve_ports_and_hands_the_apps_a_cluster_url(var_dir):
    """Six nodes and their cluster bus ports in one block (not Redis' port + 10000)."""
    cluster = config(var_dir, REDIS_MODE="cluster", REDIS_PORT="7000")
    stack = StackRedis("cluster", 7000)
    assert stack.data_ports == tuple(range(7000, 7006))
    assert stack.bus_ports == tuple(range(7006, 7012))
    assert stack.sentinel_ports == ()
    assert stack.ports == tuple(range(7000, 7012))
    assert cluster.redis_url == "redis+cluster://" + ",".join(
        f"127.0.0.1:{port}" for port in range(7000, 7006))
    assert stack.serves(cluster.redis_url)


def test_an_address_without_a_port_means_redis_default_port():
    assert StackRedis("single", 6379).serves("redis://localhost/0")
    assert not StackRedis("single", 6399).serves("redis://localhost/0")


@pytest.mark.parametrize(("mode", "url", "ours"), [
    ("single", "redis://127.0.0.1:7000/0", True),
    ("single", "redis://localhost:7000/3", True),  # another database of the same Redis
    ("single", "redis://:secret@127.0.0.1:7000/0", True),
    ("single", "redis://127.0.0.1:7001/0", False),
    ("single", "redis://[::1]:7000/0", False),  # the stack listens on 127.0.0.1 only
    ("single", "redis://10.0.0.5:7000/0", False),
    ("single", "rediss://127.0.0.1:7000/0", False),
    ("single", "unix:///run/redis.sock", False),
    ("sentinel", "redis+sentinel://127.0.0.1:7003,127.0.0.1:7005/eventgate/0", True),
    ("sentinel", "redis+sentinel://127.0.0.1:7003,10.0.0.5:26379/eventgate/0", False),
    ("sentinel", "redis://127.0.0.1:7000/0", False),  # the first node, without the sentinels
    ("sentinel", "redis+sentinel://sentinel.example:26379/eventgate", False),
    ("cluster", "redis+cluster://127.0.0.1:7000,127.0.0.1:7005", True),
    ("cluster", "redis+cluster://:secret@localhost:7002", True),
    ("cluster", "redis+cluster://127.0.0.1:7006", False),  # a cluster bus port
    ("cluster", "redis+cluster://127.0.0.1:7000,10.0.0.5:7001", False),
    ("cluster", "redis://127.0.0.1:7000/0", False),  # one node, without the cluster
])
def test_a_url_names_the_stacks_redis_or_the_users_own(mode, url, ours):
    assert StackRedis(mode, 7000).serves(url) is ours


def test_an_unknown_mode_is_refused(var_dir):
    with pytest.raises(ConfigError) as caught:
        config(var_dir, REDIS_MODE="replicated")
    assert "single, sentinel or cluster" in caught.value.message


@pytest.mark.parametrize("size", ["0", "1048576", "100k", "256mb", "1GB", "2g"])
def test_maxmemory_takes_redis_units(var_dir, size):
    assert config(var_dir, REDIS_MAXMEMORY=size).redis_maxmemory == size


@pytest.mark.parametrize("size", ["", "-1", "256 mb", "1.5gb", "10%", "256mib"])
def test_maxmemory_refuses_what_redis_would_not_read(var_dir, size):
    with pytest.raises(ConfigError) as caught:
        config(var_dir, REDIS_MAXMEMORY=size)
    assert "EVENTGATE_REDIS_MAXMEMORY" in caught.value.message


@pytest.mark.parametrize("name", ["PORT", "WEB_PORT", "STREAM_PORT"])
def test_a_port_inside_the_redis_block_is_refused(var_dir, name):
    with pytest.raises(ConfigError) as caught:
        config(var_dir, REDIS_MODE="sentinel", REDIS_PORT="9000", **{name: "9004"})
    assert f"EVENTGATE_{name}=9004" in caught.value.message


def test_a_port_of_the_cluster_bus_is_refused(var_dir):
    with pytest.raises(ConfigError) as caught:
        config(var_dir, REDIS_MODE="cluster", REDIS_PORT="9000", STREAM_PORT="9011")
    assert "EVENTGATE_STREAM_PORT=9011" in caught.value.message


def test_the_block_must_fit_below_65536(var_dir):
    with pytest.raises(ConfigError):
        config(var_dir, REDIS_MODE="sentinel", REDIS_PORT="65533")
    with pytest.raises(ConfigError):  # the cluster bus ports too
        config(var_dir, REDIS_MODE="cluster", REDIS_PORT="65526")
    assert config(var_dir, REDIS_MODE="cluster", REDIS_PORT="65524").redis_port == 65524
    assert config(var_dir, REDIS_PORT="65535").redis_port == 65535  # single: one port


def test_a_redis_of_the_users_own_frees_the_block(var_dir):
    own = config(var_dir, REDIS_MODE="sentinel", REDIS_PORT="9000", WEB_PORT="9004",
                 REDIS_URL="redis://redis.example:6379/0")
    assert own.web_port == 9004
