"""shared.redisconn: every client knob that redis-py 8 would otherwise default is set explicitly
(R-PY-1: pool of 100, 5 s socket timeout and 10 retries would stall workers and hide reconnects)."""

from __future__ import annotations

import contextlib
import gc
import os
import threading
from dataclasses import replace

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from eventgate.shared.config import Config
from eventgate.shared.redisconn import ThreadClients, connect, connect_pubsub
from tests.servers import RedisServer

CONFIG = Config(
    secret_keys=("k",),
    publish_keys=("p",),
    redis_url="redis://127.0.0.1:6555/3",
    heartbeat_seconds=4.0,
    redis_timeout_seconds=0.7,
    redis_connect_timeout_seconds=0.3,
    redis_pool_size=7,
)

# The retry counts we chose: commands none (a retried publish script could store an event twice),
# the pub/sub connection none (the broker must see every drop so that it backfills from the log).
COMMAND_RETRIES = 0
PUBSUB_RETRIES = 0


def _retry(kwargs: dict) -> Retry:
    retry = kwargs["retry"]
    assert isinstance(retry, Retry)
    return retry


def test_redis_client_config_is_explicit():
    client = connect(CONFIG)
    pool = client.connection_pool
    kwargs = pool.connection_kwargs
    assert isinstance(pool, redis.BlockingConnectionPool)  # waits for a free slot, bounded
    assert pool.max_connections == CONFIG.redis_pool_size
    assert pool.timeout is not None and 0 < pool.timeout <= 5
    assert kwargs["socket_timeout"] == CONFIG.redis_timeout_seconds
    assert kwargs["socket_connect_timeout"] == CONFIG.redis_connect_timeout_seconds
    assert kwargs["health_check_interval"] > 0  # a pooled connection Redis dropped is replaced
    assert kwargs["retry_on_timeout"] is False
    retry = _retry(kwargs)
    assert retry.get_retries() == COMMAND_RETRIES
    assert isinstance(retry._backoff, NoBackoff)
    assert (kwargs["host"], kwargs["port"], kwargs["db"]) == ("127.0.0.1", 6555, 3)

    pubsub_client = connect_pubsub(CONFIG)
    pubsub_pool = pubsub_client.connection_pool
    kwargs = pubsub_pool.connection_kwargs
    assert pubsub_pool.max_connections is not None and pubsub_pool.max_connections <= 8
    assert kwargs["socket_timeout"] is not None
    # a read must outlast a heartbeat interval, or an idle subscription would time out
    assert kwargs["socket_timeout"] > CONFIG.heartbeat_seconds
    assert kwargs["socket_connect_timeout"] == CONFIG.redis_connect_timeout_seconds
    # explicit; 0 is a deliberate choice (the broker PINGs under its own write lock), anything
    # else must check at least once per heartbeat
    assert "health_check_interval" in kwargs
    assert 0 <= kwargs["health_check_interval"] <= CONFIG.heartbeat_seconds
    assert _retry(kwargs).get_retries() == PUBSUB_RETRIES
    assert (kwargs["host"], kwargs["port"], kwargs["db"]) == ("127.0.0.1", 6555, 3)


def test_connections_made_by_the_pools_carry_the_settings():
    for client, retries in ((connect(CONFIG), COMMAND_RETRIES), (connect_pubsub(CONFIG), 0)):
        connection = client.connection_pool.make_connection()  # no I/O until used
        assert (
            connection.socket_timeout == client.connection_pool.connection_kwargs["socket_timeout"]
        )
        assert connection.socket_connect_timeout == CONFIG.redis_connect_timeout_seconds
        assert connection.retry.get_retries() == retries
        connection.disconnect()


def test_each_call_builds_its_own_pool():
    # no module-level client: a pool is made by the caller, once per process
    assert connect(CONFIG).connection_pool is not connect(CONFIG).connection_pool


# -- ThreadClients: a pooled connection kept per publishing thread (real redis-server) -----------


def _connection_ids(server) -> set[int]:  # noqa: ANN001 - tests.servers.RedisServer
    return {int(client["id"]) for client in server.client().client_list()}


def test_a_thread_keeps_one_connection_for_all_its_commands(redis_server):
    clients = ThreadClients(connect(replace(CONFIG, redis_url=redis_server.url)))
    mine = clients.client()
    assert mine is not clients.shared and mine is clients.client()
    me = mine.client_id()
    for _ in range(20):
        assert clients.client().client_id() == me  # the same connection, never checked in


def test_at_most_half_the_pool_is_kept_and_the_rest_share(redis_server):
    shared = connect(replace(CONFIG, redis_url=redis_server.url, redis_pool_size=4))
    clients = ThreadClients(shared)
    seen: list[redis.Redis] = []
    done = threading.Barrier(4)

    def use() -> None:
        client = clients.client()
        client.ping()
        seen.append(client)
        done.wait(10)  # all four threads alive at once

    threads = [threading.Thread(target=use) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(15)
    assert len(seen) == 4
    assert sum(client is not shared for client in seen) == 2
    assert sum(client is shared for client in seen) == 2


def test_a_kept_connection_goes_back_when_its_thread_ends(redis_server):
    clients = ThreadClients(connect(replace(CONFIG, redis_url=redis_server.url, redis_pool_size=2)))
    kept = []
    for _ in range(3):  # one connection may be kept at a time: each thread's is given back
        thread = threading.Thread(
            target=lambda: kept.append(clients.client() is not clients.shared))
        thread.start()
        thread.join(10)
        gc.collect()
    assert kept == [True, True, True]


def test_a_kept_connection_reconnects_after_redis_restarts(tmp_path):
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        clients = ThreadClients(connect(replace(CONFIG, redis_url=server.url)))
        clients.client().set("k", "before")
        server.restart()
        with contextlib.suppress(redis.ConnectionError):
            clients.client().ping()  # the dropped connection fails once, and is closed
        assert clients.client().set("k", "after")
        assert server.client().get("k") == b"after"
    finally:
        server.stop()


def test_a_forked_child_never_uses_its_parents_connection(redis_server):
    clients = ThreadClients(connect(replace(CONFIG, redis_url=redis_server.url)))
    parent = clients.client().client_id()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report the id of the connection it uses, and leave at once
        try:
            os.write(write_end, str(clients.client().client_id()).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    os.waitpid(pid, 0)
    child = int(os.read(read_end, 64) or b"0")
    os.close(read_end)
    assert child and child != parent
    assert clients.client().client_id() == parent  # the parent's is still whole
    assert parent in _connection_ids(redis_server)
