"""connect(config): Redis clients whose timeouts, retries, pool size and health checks we chose.

redis-py 8 defaults (pool of 100, 5 s socket timeout, 10 retries with backoff) would let a Redis
outage stall a blocking web worker into gunicorn's timeout, and would hide pub/sub reconnects.
Every such knob is set here explicitly so that an upgrade cannot change our behaviour silently.
"""

from __future__ import annotations

import os

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from shared.config import Config

#: Seconds a caller waits for a free pooled connection before giving up.
POOL_WAIT_SECONDS = 2.0


def connect(config: Config, pool_wait_seconds: float = POOL_WAIT_SECONDS) -> redis.Redis:
    """A client for commands (publish, replay, health). Fails fast: ``redis_timeout_seconds``
    per attempt and no retry. A retried EVALSHA whose first run stored the event but whose reply
    was lost (Redis stopping) would store it twice; a connection Redis closed is replaced by the
    pool's check at checkout instead, so the caller alone decides whether to try again."""
    pool = redis.BlockingConnectionPool.from_url(
        config.redis_url,
        max_connections=config.redis_pool_size,
        timeout=pool_wait_seconds,
        socket_timeout=config.redis_timeout_seconds,
        socket_connect_timeout=config.redis_connect_timeout_seconds,
        socket_keepalive=True,
        health_check_interval=30,
        retry=Retry(NoBackoff(), 0),
        retry_on_timeout=False,
    )
    return redis.Redis(connection_pool=pool)


def connect_pubsub(config: Config) -> redis.Redis:
    """A client for the one pub/sub connection of a stream worker. No retries at all: redis-py
    would otherwise reconnect and resubscribe silently, losing what was published meanwhile; the
    broker must see every drop so that it can backfill from the log."""
    return redis.Redis.from_url(
        config.redis_url,
        # Named so that `CLIENT LIST` shows which worker holds which pub/sub connection.
        client_name=f"eventgate-stream-{os.getpid()}",
        socket_timeout=max(config.heartbeat_seconds, 1.0) * 2,
        socket_connect_timeout=config.redis_connect_timeout_seconds,
        socket_keepalive=True,
        # The broker PINGs on its own, under its write lock: redis-py's health check would write
        # from the reading greenlet concurrently with subscribe calls from others.
        health_check_interval=0,
        retry=Retry(NoBackoff(), 0),
        single_connection_client=False,
        max_connections=4,
    )
