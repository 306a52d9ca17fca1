"""connect(config): Redis clients whose timeouts, retries, pool size and health checks we chose.

redis-py 8 defaults (pool of 100, 5 s socket timeout, 10 retries with backoff) would let a Redis
outage stall a blocking web worker into gunicorn's timeout, and would hide pub/sub reconnects.
Every such knob is set here explicitly so that an upgrade cannot change our behaviour silently.

``EVENTGATE_REDIS_URL`` (read by shared/redisurl.py) names one Redis (``redis://``,
``rediss://``, ``unix://``, redis-py's own parsing), Redis Sentinel (``redis+sentinel://`` and
``rediss+sentinel://``), whose clients follow the current primary through redis-py's sentinel
pools (shared/primary.py), or a Redis Cluster (``redis+cluster://``, ``rediss+cluster://``):
redis-py's cluster client, which learns the slot map and follows MOVED and ASK redirects. Its
retries are off as everywhere else; a redirect is not a retry (the node refused the command
before running it), so following one can never store an event twice.
"""

from __future__ import annotations

import functools
import os
import threading
import weakref
from typing import TYPE_CHECKING, Protocol

import redis
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.commands.core import Script
from redis.exceptions import RedisClusterException
from redis.retry import Retry
from redis.sentinel import SentinelConnectionPool

from eventgate.shared.primary import BlockingSentinelPool, Primary
from eventgate.shared.redisurl import ClusterURL, parse_cluster_url, parse_sentinel_url

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


class Cluster(RedisCluster):
    """redis-py's cluster client whose every failure is a RedisError. redis-py raises some of
    its cluster failures (no node reachable, a slot no node serves while a shard fails over) as
    RedisClusterException, which is not one: our callers answer RedisError with a 503 and
    would let those through as a 500."""

    def execute_command(self, *args: object, **kwargs: object) -> object:
        try:
            return super().execute_command(*args, **kwargs)
        except RedisClusterException as error:
            raise redis.exceptions.ClusterError(str(error)) from error


class LazyCluster:
    """A Cluster client made on first use. redis-py's asks the nodes for the slot map as it is
    made, so an app made while the cluster is down would fail to start; ours starts, answers
    503 while no node answers, and works once one does. Everything else is the Cluster's."""

    connection_pool = None  # no one pool: ThreadClients keeps no connection of a cluster
    connection = None

    def __init__(self, **kwargs: object) -> None:
        self._kwargs = kwargs
        self._client: Cluster | None = None
        self._lock = threading.Lock()

    def cluster(self) -> Cluster:
        """The client, made now if need be; raises ConnectionError while no node answers."""
        client = self._client
        if client is None:
            with self._lock:
                if self._client is None:
                    try:
                        self._client = Cluster(**self._kwargs)
                    except RedisClusterException as error:
                        raise redis.ConnectionError(
                            f"no node of the Redis Cluster answered: {error}"
                        ) from error
                client = self._client
        return client

    def register_script(self, script: str) -> Script:
        return Script(self, script)

    def __getattr__(self, name: str) -> object:
        return getattr(self.cluster(), name)


#: A client for commands: one Redis (plain or following a Sentinel primary) or a Cluster.
Client = redis.Redis | LazyCluster


def connect(
    config: RedisSettings,
    pool_wait_seconds: float = POOL_WAIT_SECONDS,
    primary: Primary | None = None,
) -> Client:
    """A client for commands (publish, replay, health). Fails fast: ``redis_timeout_seconds``
    per attempt and no retry. A retried EVALSHA whose first run stored the event but whose reply
    was lost (Redis stopping) would store it twice; a connection Redis closed is replaced by the
    pool's check at checkout instead, so the caller alone decides whether to try again.

    Under Sentinel the pool follows ``primary`` (by default a Primary of its own; pass the
    process's one so that every pool counts a failover once): each new connection asks the
    sentinels where the primary is, and a connection that meets a demoted primary (``READONLY``)
    or a dead one fails its command and reconnects to the current primary on its next.

    Under Cluster, a RedisCluster whose every node has a pool of ``redis_pool_size``
    connections that waits ``pool_wait_seconds`` for a free one, like the single pool."""
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
    cluster = parse_cluster_url(config.redis_url)
    if cluster is not None:
        wait = settings.pop("timeout")
        settings["connection_pool_class"] = functools.partial(
            redis.BlockingConnectionPool, timeout=wait
        )
        return cluster_client(cluster, settings)
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


def cluster_client(target: ClusterURL, settings: dict[str, object]) -> LazyCluster:
    """A cluster client for ``target`` with our connection ``settings`` on every node's pool.

    Not requiring full coverage: while a shard is failing over, the rest of the cluster keeps
    publishing and streaming (a command for a slot with no primary fails on its own)."""
    settings = dict(settings)
    settings.pop("retry_on_timeout", None)
    settings.pop("health_check_interval", None)
    (host, port), *_ = target.nodes
    host_text = f"[{host}]" if ":" in host else host
    return LazyCluster(
        # redis-py gives each node the pool class (ours blocks for a free connection rather
        # than fail at once) only for a client made from a URL: the first node's, without
        # credentials (given apart) and with TLS in its scheme.
        url=f"{'rediss' if target.ssl else 'redis'}://{host_text}:{port}",
        startup_nodes=[ClusterNode(host, port) for host, port in target.nodes],
        username=target.username,
        password=target.password,
        require_full_coverage=False,
        # A redirect (MOVED) patches the slot map at once; every few it is read again whole.
        reinitialize_steps=5,
        **settings,
    )


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

    def __init__(self, client: Client) -> None:
        self.shared = client
        # A cluster client picks a node per command: there is no one connection to keep.
        pool = getattr(client, "connection_pool", None)
        pool_size = getattr(pool, "max_connections", 0)
        self._limit = 0 if getattr(client, "connection", None) is not None else pool_size // 2
        self._kept = 0
        self._lock = threading.Lock()
        self._local = threading.local()

    def client(self) -> Client:
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


def _pubsub_settings(config: Config) -> dict[str, object]:
    return {
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


def connect_pubsub(config: Config, primary: Primary | None = None) -> redis.Redis:
    """A client for the one pub/sub connection of a stream worker. No retries at all: redis-py
    would otherwise reconnect and resubscribe silently, losing what was published meanwhile; the
    broker must see every drop so that it can backfill from the log. Under Sentinel it connects
    to the primary ``primary`` names (the worker's one: the broker compares the two)."""
    settings = _pubsub_settings(config)
    target = parse_sentinel_url(config.redis_url)
    if target is None:
        return redis.Redis.from_url(config.redis_url, single_connection_client=False, **settings)
    follow = primary if primary is not None else primary_for(config)
    pool = SentinelConnectionPool(target.service, follow, **target.node_kwargs(), **settings)
    return redis.Redis(connection_pool=pool)


def connect_node_pubsub(
    config: Config, host: str, port: int, *, control: bool = False
) -> redis.Redis:
    """A client for a stream worker's pub/sub connection to one Cluster node (the primary of a
    shard), with the cluster URL's credentials and the settings of ``connect_pubsub``. With
    ``control``, its control-channel connection instead, named apart from the shards' ones."""
    target = parse_cluster_url(config.redis_url)
    assert target is not None, "a node of a cluster URL"
    settings = _pubsub_settings(config)
    if control:
        settings["client_name"] = f"eventgate-control-{os.getpid()}"
    return redis.Redis(host=host, port=port, username=target.username,
                       password=target.password, ssl=target.ssl, **settings)


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
