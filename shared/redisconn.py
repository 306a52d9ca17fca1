"""connect(config): Redis clients whose timeouts, retries, pool size and health checks we chose.

redis-py 8 defaults (pool of 100, 5 s socket timeout, 10 retries with backoff) would let a Redis
outage stall a blocking web worker into gunicorn's timeout, and would hide pub/sub reconnects.
Every such knob is set here explicitly so that an upgrade cannot change our behaviour silently.

``EVENTGATE_REDIS_URL`` (read by shared/redisurl.py) names one Redis (``redis://``,
``rediss://``, ``unix://``, redis-py's own parsing) or Redis Sentinel (``redis+sentinel://`` and
``rediss+sentinel://``), whose clients follow the current primary through redis-py's sentinel
pools (shared/primary.py).
"""

from __future__ import annotations

import os
import threading
import weakref
from typing import TYPE_CHECKING, Protocol

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis.sentinel import SentinelConnectionPool

from eventgate.shared.primary import BlockingSentinelPool, Primary
from eventgate.shared.redisurl import parse_sentinel_url

if TYPE_CHECKING:
    from eventgate.shared.config import Config

#: Seconds a caller waits for a free pooled connection before giving up.
POOL_WAIT_SECONDS = 2.0


class RedisSettings(Protocol):
    """What ``connect`` reads: a Config, or a Publisher's PublishSettings (no secrets needed)."""

    @property
    def redis_url(self) -> str: ...
    @property
    def redis_pool_size(self) -> int: ...
    @property
    def redis_timeout_seconds(self) -> float: ...
    @property
    def redis_connect_timeout_seconds(self) -> float: ...


def connect(
    config: RedisSettings,
    pool_wait_seconds: float = POOL_WAIT_SECONDS,
    primary: Primary | None = None,
) -> redis.Redis:
    """A client for commands (publish, replay, health). Fails fast: ``redis_timeout_seconds``
    per attempt and no retry. A retried EVALSHA whose first run stored the event but whose reply
    was lost (Redis stopping) would store it twice; a connection Redis closed is replaced by the
    pool's check at checkout instead, so the caller alone decides whether to try again.

    Under Sentinel the pool follows ``primary`` (by default a Primary of its own; pass the
    process's one so that every pool counts a failover once): each new connection asks the
    sentinels where the primary is, and a connection that meets a demoted primary (``READONLY``)
    or a dead one fails its command and reconnects to the current primary on its next."""
    settings = {
        "max_connections": config.redis_pool_size,
        "timeout": pool_wait_seconds,
        "socket_timeout": config.redis_timeout_seconds,
        "socket_connect_timeout": config.redis_connect_timeout_seconds,
        "socket_keepalive": True,
        "health_check_interval": 30,
        "retry": Retry(NoBackoff(), 0),
        "retry_on_timeout": False,
    }
    target = parse_sentinel_url(config.redis_url)
    if target is None:
        leaving = LEAVING.get(config.redis_url.partition("://")[0].lower())
        if leaving is not None:
            settings["connection_class"] = leaving
        pool = redis.BlockingConnectionPool.from_url(config.redis_url, **settings)
    else:
        follow = primary if primary is not None else primary_for(config)
        pool = BlockingSentinelPool(target.service, follow, **target.node_kwargs(), **settings)
    return redis.Redis(connection_pool=pool)


class LeavingConnection(redis.Connection):
    """A connection to one Redis URL that closes itself when the server answers ``READONLY``:
    the server was demoted to a replica (a managed Redis whose primary endpoint moved to another
    node), and the next command reconnects, resolving the host name again. redis-py keeps such a
    connection open, and every publish on it would fail for as long as the old node lives."""

    def read_response(self, *args: object, **kwargs: object) -> object:
        try:
            return super().read_response(*args, **kwargs)
        except redis.exceptions.ReadOnlyError:
            self.disconnect()
            raise


class LeavingSSLConnection(LeavingConnection, redis.SSLConnection):
    pass


#: URL scheme -> the connection class of a command pool for it (unix sockets do not move).
LEAVING = {"redis": LeavingConnection, "rediss": LeavingSSLConnection}


class ThreadClients:
    """Per thread, a client that keeps one of ``client``'s pooled connections for itself.

    Every command on a pooled client checks a connection out and back in: a lock, a queue, a
    readiness poll, a pid check — a noticeable share of a single-event publish
    (docs/performance.md has the figure). A thread that publishes again and again (a web
    worker's threads) keeps one connection instead. At most half the pool is kept so (the rest
    stays for every other caller); past that, and for a client that holds a single connection
    already, ``client()`` is the shared pooled one. A kept connection goes back to the pool when
    its thread ends; a forked child never uses its parent's. It reconnects by itself after an
    error, as a pooled one would be replaced (redis-py drops a connection a command failed on).
    """

    def __init__(self, client: redis.Redis) -> None:
        self.shared = client
        pool_size = getattr(client.connection_pool, "max_connections", 0)
        self._limit = 0 if client.connection is not None else pool_size // 2
        self._kept = 0
        self._lock = threading.Lock()
        self._local = threading.local()

    def client(self) -> redis.Redis:
        """This thread's client. Raises RedisError when a connection to keep cannot be had
        (Redis unreachable, the pool exhausted past its wait)."""
        mine = getattr(self._local, "mine", None)
        if mine is not None and mine[0] == os.getpid():
            return mine[1]
        with self._lock:
            if self._kept >= self._limit:
                return self.shared
            self._kept += 1
        try:
            kept = redis.Redis(
                connection_pool=self.shared.connection_pool, single_connection_client=True
            )
        except BaseException:
            self._forget()
            raise
        # Its thread's end drops the last reference: redis-py gives the connection back.
        weakref.finalize(kept, self._forget)
        self._local.mine = (os.getpid(), kept)
        return kept

    def _forget(self) -> None:
        with self._lock:
            self._kept -= 1


def connect_pubsub(config: Config, primary: Primary | None = None) -> redis.Redis:
    """A client for the one pub/sub connection of a stream worker. No retries at all: redis-py
    would otherwise reconnect and resubscribe silently, losing what was published meanwhile; the
    broker must see every drop so that it can backfill from the log. Under Sentinel it connects
    to the primary ``primary`` names (the worker's one: the broker compares the two)."""
    settings = {
        # Named so that `CLIENT LIST` shows which worker holds which pub/sub connection.
        "client_name": f"eventgate-stream-{os.getpid()}",
        "socket_timeout": max(config.heartbeat_seconds, 1.0) * 2,
        "socket_connect_timeout": config.redis_connect_timeout_seconds,
        "socket_keepalive": True,
        # The broker PINGs on its own, under its write lock: redis-py's health check would write
        # from the reading greenlet concurrently with subscribe calls from others.
        "health_check_interval": 0,
        "retry": Retry(NoBackoff(), 0),
        "max_connections": 4,
    }
    target = parse_sentinel_url(config.redis_url)
    if target is None:
        return redis.Redis.from_url(config.redis_url, single_connection_client=False, **settings)
    follow = primary if primary is not None else primary_for(config)
    pool = SentinelConnectionPool(target.service, follow, **target.node_kwargs(), **settings)
    return redis.Redis(connection_pool=pool)


def primary_for(config: RedisSettings) -> Primary | None:
    """The Primary to follow for ``config``'s Redis URL (one per process: share it between
    the process's pools); None for a URL that names one Redis. Opens no connection."""
    target = parse_sentinel_url(config.redis_url)
    if target is None:
        return None
    return Primary(
        list(target.sentinels),
        target.service,
        sentinel_kwargs={
            "socket_timeout": config.redis_timeout_seconds,
            "socket_connect_timeout": config.redis_connect_timeout_seconds,
            "retry": Retry(NoBackoff(), 0),
            "ssl": target.ssl,
        },
    )
