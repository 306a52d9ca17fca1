"""StreamState: everything one stream worker process holds, built whole in one place, with the
worker's ``start()`` and ``shutdown()``.

Streams never finish on their own, so gunicorn's "graceful" stop would just cut them at
graceful_timeout — all at once, and on SIGTERM without running any cleanup. Instead, when a
worker exits (SIGTERM, HUP reload, max age) ``shutdown`` ends every stream itself with a
jittered ``retry:``, so clients come back spread out, on the new workers, and resume from their
cursor. The gunicorn hooks (stream/gunicorn_conf.py) only call these methods.
"""

from __future__ import annotations

import logging
import random
import time
from collections import deque
from dataclasses import dataclass, field

import gevent
import redis
from flask import Flask

from eventgate.shared import pools, sse
from eventgate.shared.config import Config
from eventgate.shared.redisconn import (
    connect,
    connect_node_pubsub,
    connect_pubsub,
    primary_for,
)
from eventgate.shared.redisurl import parse_cluster_url
from eventgate.shared.tokens import ChannelTokens
from eventgate.stream import acceptor, heartbeat, readiness, status
from eventgate.stream import metrics as stream_metrics
from eventgate.stream.acceptor import Acceptor
from eventgate.stream.broker import Broker
from eventgate.stream.hub import Hub
from eventgate.stream.limits import StreamLimits
from eventgate.stream.metrics import StreamMetrics
from eventgate.stream.opening import StreamOpener
from eventgate.stream.resume import Resume
from eventgate.stream.shards import ShardedBroker

log = logging.getLogger("eventgate.stream")

#: The key of the worker's StreamState in ``app.extensions`` (stream/gunicorn_conf.py finds it
#: there without importing this module).
EXTENSION = pools.STREAM_STATE_KEY

#: How long a stream set-up waits for a pooled Redis connection (the web tier waits 2 s).
STORM_POOL_WAIT_SECONDS = 30.0


@dataclass(eq=False)
class StreamState:
    """One worker's config, Redis client, hub, broker, admission, front-door opener and
    metrics; ``build`` makes it, ``start`` runs it, ``shutdown`` ends it."""

    config: Config
    redis: redis.Redis
    hub: Hub
    broker: Broker
    #: Admission of new streams (per worker, per subject).
    limits: StreamLimits
    #: What both front doors call to open a stream.
    opener: StreamOpener
    metrics: StreamMetrics
    started_at: float = field(default_factory=time.time)
    greenlets: list[gevent.Greenlet] = field(default_factory=list)
    #: The accept fast path, once it serves this worker's listeners (``take_listeners``).
    acceptor: Acceptor | None = None
    #: Recent lag histogram snapshots (stream/status.py diffs the newest against the oldest).
    status_lag: deque | None = None

    @classmethod
    def build(cls, config: Config) -> StreamState:
        """The state of a new worker; nothing runs until ``start()``. Build it in the worker,
        after the fork: it holds the worker's Redis connections and gevent's loop."""
        # A reconnect storm (a worker restarted under thousands of streams) borrows the pool
        # for thousands of replays at once: queue them rather than end streams after the web
        # tier's fail-fast wait, or each client comes back seconds later and the work is done
        # twice.
        # Under Sentinel one Primary for the worker: its pools, broker and metrics agree on
        # where the primary is and count each failover once.
        primary = primary_for(config)
        readiness.install()  # redis-py's check at every command, without a hub switch
        client = connect(config, pool_wait_seconds=STORM_POOL_WAIT_SECONDS, primary=primary)
        hub = Hub()
        if parse_cluster_url(config.redis_url) is not None:
            broker: Broker = ShardedBroker(
                config, hub, client, lambda host, port: connect_node_pubsub(config, host, port),
                lambda host, port: connect_node_pubsub(config, host, port, control=True),
            )
        else:
            broker = Broker(config, hub, client, connect_pubsub(config, primary))
        limits = StreamLimits(client, config)
        tokens = ChannelTokens.from_config(config)
        return cls(
            config=config,
            redis=client,
            hub=hub,
            broker=broker,
            limits=limits,
            opener=StreamOpener(config, tokens, limits, Resume(hub, broker, client)),
            metrics=StreamMetrics(hub, broker, pools.app_registry()),
        )

    @classmethod
    def of(cls, app: Flask) -> StreamState:
        """The state of the stream app ``app`` (stream/app.py registers it)."""
        return app.extensions[EXTENSION]

    def start(self) -> None:
        """Spawn the broker and the worker's heartbeat, lease-keeping and metrics greenlets."""
        self.broker.start()
        self.greenlets = [
            gevent.spawn(heartbeat.run, self.hub, self.config.heartbeat_seconds),
            gevent.spawn(self.limits.keep),
            gevent.spawn(stream_metrics.run, self),
        ]

    def take_listeners(self, worker: object) -> None:
        """Serve the gunicorn ``worker``'s listeners through the accept fast path (its
        post_worker_init hook: before the worker builds its own servers); while this worker is
        full, it leaves new connections to the others."""
        self.acceptor = acceptor.install(self.opener, worker)
        if self.acceptor is not None:
            self.limits.watch_room(self.acceptor.pause, self.acceptor.resume)

    def shutdown(self, graceful_timeout: float) -> None:
        """End the worker: stop accepting (ordinary requests get ``graceful_timeout`` seconds),
        withdraw the status record, drop pub/sub, end every stream with a jittered ``retry:``
        and give their subject leases back."""
        if self.acceptor is not None:
            self.acceptor.close(graceful_timeout=graceful_timeout)
        status.withdraw(self)
        self.broker.stop()
        retry_ms = self.config.retry_ms
        self.hub.finish_all(
            lambda: sse.retry(int(retry_ms * random.uniform(0.2, 2.0))) + sse.comment("shutdown")
        )
        # Give the subject leases of the streams just ended back now: their clients reconnect
        # within seconds and must not find their own old streams still counted against them.
        try:
            self.limits.flush()
        except Exception as error:  # noqa: BLE001 - Redis down: the leases lapse on their own
            log.warning("stream leases not released at exit: %s", error)
