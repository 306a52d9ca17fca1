"""EVENTGATE_REDIS_URL in its Sentinel form: parsed in one place (shared/redisconn.py), refused
at config load with a sentence when it cannot work, and turned into clients that follow the
primary through the sentinels (no I/O here: nothing listens)."""

from __future__ import annotations

from dataclasses import replace

import pytest
import redis

from eventgate.shared.config import Config
from eventgate.shared.errors import ConfigError
from eventgate.shared.primary import (
    BlockingSentinelPool,
    FollowingConnection,
    FollowingSSLConnection,
    Primary,
    primary_of,
)
from eventgate.shared.publisher import Publisher
from eventgate.shared.redisconn import connect, connect_pubsub, primary_for
from eventgate.shared.redisurl import (
    RedisURLError,
    SentinelURL,
    check_redis_url,
    parse_cluster_url,
    parse_sentinel_url,
)

CONFIG = Config(secret_keys=("k",), publish_keys=("p",), redis_timeout_seconds=0.7,
                redis_connect_timeout_seconds=0.3, redis_pool_size=7, heartbeat_seconds=4.0)


def test_several_sentinels_a_service_and_a_database():
    parsed = parse_sentinel_url("redis+sentinel://10.0.0.1:26380,10.0.0.2:26381/orders/3")
    assert parsed == SentinelURL(
        sentinels=(("10.0.0.1", 26380), ("10.0.0.2", 26381)), service="orders", db=3)
    assert parsed.ssl is False and parsed.username is None and parsed.password is None


def test_a_sentinel_port_defaults_to_26379_and_the_database_to_0():
    parsed = parse_sentinel_url("redis+sentinel://s1,s2:1234,[::1]/main")
    assert parsed.sentinels == (("s1", 26379), ("s2", 1234), ("::1", 26379))
    assert parsed.db == 0
    assert parse_sentinel_url("redis+sentinel://[::1]:5000/main/").sentinels == (("::1", 5000),)


def test_credentials_are_for_the_data_nodes_and_stay_out_of_repr():
    parsed = parse_sentinel_url("rediss+sentinel://app:p%40ss%3Aword@s1:26379/main/2")
    assert (parsed.username, parsed.password, parsed.ssl, parsed.db) == ("app", "p@ss:word",
                                                                         True, 2)
    assert "word" not in repr(parsed)
    only_password = parse_sentinel_url("redis+sentinel://:secret@s1/main")
    assert (only_password.username, only_password.password) == (None, "secret")


def test_urls_of_one_redis_are_left_to_redis_py():
    for url in ("redis://127.0.0.1:6379/0", "rediss://h:1/2", "unix:///tmp/redis.sock"):
        assert parse_sentinel_url(url) is None


@pytest.mark.parametrize(("url", "words"), [
    ("redis+sentinel://s1:26379", "names no service"),
    ("redis+sentinel://s1:26379/", "names no service"),
    ("redis+sentinel://s1:port/main", "port 'port'"),
    ("redis+sentinel://s1:0/main", "port '0'"),
    ("redis+sentinel://s1:65536/main", "port '65536'"),
    ("redis+sentinel://s1:/main", "port ''"),
    ("redis+sentinel://s1,,s2/main", "without a host"),
    ("redis+sentinel://[::1/main", "not host:port"),
    ("redis+sentinel://s1/main/zero", "database number"),
    ("redis+sentinel://s1/main/0/extra", "database number"),
    ("redis+sentinel://s1/main?ssl=1", "no query"),
    ("redis+cluster://s1/main", "takes no database, path or query"),
    ("redis+cluster://s1,,s2", "without a host"),
    ("redis+cluster://s1:99999", "port '99999'"),
    ("redis+sharded://s1", "must start with redis://"),
    ("localhost:6379", "must start with redis://"),
    ("redis://h:port/0", "port that is not a number"),
])
def test_a_bad_url_is_refused_at_config_load_with_a_sentence(url, words):
    with pytest.raises(ConfigError) as refused:
        replace(CONFIG, redis_url=url.replace("s1", "user:hunter2@s1", 1))
    message = str(refused.value)
    assert message.startswith("EVENTGATE_REDIS_URL ") and message.endswith(".")
    assert words in message
    assert "hunter2" not in message
    with pytest.raises(RedisURLError, match=f"^the Redis URL .*{words}"):
        check_redis_url(url)  # what Publisher.from_url meets (a ValueError)


def test_config_from_env_refuses_a_bad_sentinel_url(tmp_path):
    env = {"EVENTGATE_SECRET_KEY": "k", "EVENTGATE_PUBLISH_KEY": "p",
           "EVENTGATE_VAR_DIR": str(tmp_path), "EVENTGATE_REDIS_URL": "redis+sentinel://s1"}
    with pytest.raises(ConfigError, match="names no service"):
        Config.from_env(env)


def test_the_publisher_refuses_a_bad_url_at_once():
    with pytest.raises(ValueError, match="names no service"):
        Publisher.from_url("redis+sentinel://127.0.0.1:1")


def test_command_clients_follow_the_primary_with_our_timeouts_and_no_retry():
    config = replace(CONFIG, redis_url="rediss+sentinel://u:pw@127.0.0.1:1,127.0.0.1:2/main/5")
    client = connect(config, pool_wait_seconds=1.5)
    pool = client.connection_pool
    assert isinstance(pool, BlockingSentinelPool) and isinstance(pool, redis.BlockingConnectionPool)
    assert pool.max_connections == 7 and pool.timeout == 1.5
    assert pool.connection_class is FollowingSSLConnection
    kwargs = pool.connection_kwargs
    assert (kwargs["db"], kwargs["username"], kwargs["password"]) == (5, "u", "pw")
    assert kwargs["socket_timeout"] == 0.7 and kwargs["socket_connect_timeout"] == 0.3
    assert kwargs["retry"].get_retries() == 0 and kwargs["retry_on_timeout"] is False
    primary = primary_of(client)
    assert isinstance(primary, Primary) and primary.service == "main"
    sentinel = primary.sentinels[0].connection_pool.connection_kwargs
    assert (sentinel["host"], sentinel["port"]) == ("127.0.0.1", 1)
    assert sentinel["socket_timeout"] == 0.7 and sentinel["retry"].get_retries() == 0
    assert sentinel["password"] is None  # the sentinels are asked without the nodes' password
    plain = connect(replace(config, redis_url="redis+sentinel://127.0.0.1:1/main"))
    assert plain.connection_pool.connection_class is FollowingConnection


def test_a_process_shares_one_primary_between_its_pools():
    config = replace(CONFIG, redis_url="redis+sentinel://127.0.0.1:1/main")
    primary = primary_for(config)
    client = connect(config, primary=primary)
    pubsub = connect_pubsub(config, primary)
    assert primary_of(client) is primary and primary_of(pubsub) is primary
    assert pubsub.connection_pool.max_connections <= 8
    assert pubsub.connection_pool.connection_kwargs["retry"].get_retries() == 0
    assert primary_for(replace(config, redis_url="redis://127.0.0.1:1/0")) is None
    assert primary_of(connect(replace(config, redis_url="redis://127.0.0.1:1/0"))) is None


def test_a_cluster_url_names_its_startup_nodes():
    parsed = parse_cluster_url("rediss+cluster://u:p%40ss@[::1]:7001,h2,h3:7003")
    assert parsed.nodes == (("::1", 7001), ("h2", 6379), ("h3", 7003))
    assert (parsed.username, parsed.password, parsed.ssl) == ("u", "p@ss", True)
    assert "p@ss" not in repr(parsed)
    assert parse_cluster_url("redis://h:1/0") is None
    assert parse_sentinel_url("redis+cluster://h:1") is None


def test_a_cluster_client_is_made_on_first_use_and_fails_as_a_redis_error():
    client = connect(replace(CONFIG, redis_url="redis+cluster://127.0.0.1:1"))
    with pytest.raises(redis.ConnectionError, match="no node of the Redis Cluster answered"):
        client.ping()
