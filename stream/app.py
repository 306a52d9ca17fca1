"""The SSE broker: create_app(config) builds the stream app of one gevent worker process.

Run only under ``gunicorn -k gevent`` (see stream/gunicorn_conf.py and deploy/): the factory
starts the worker's hub greenlets, so it must run in the worker, after the fork — never with
``--preload``.
"""

from __future__ import annotations

import gevent
from flask import Flask, request

from eventgate.shared import logformat
from eventgate.shared.config import Config
from eventgate.shared.pools import app_registry
from eventgate.shared.redisconn import connect, connect_pubsub
from eventgate.shared.tokens import ChannelTokens
from eventgate.stream import errors, heartbeat, metrics, views
from eventgate.stream.broker import Broker
from eventgate.stream.handover import Handover
from eventgate.stream.hub import Hub
from eventgate.stream.limits import StreamLimits
from eventgate.stream.state import StreamState

#: How long a stream set-up waits for a pooled Redis connection (the web tier waits 2 s).
STORM_POOL_WAIT_SECONDS = 30.0


def create_app(config: Config | None = None) -> Flask:
    """Build the stream app and start its broker and heartbeat greenlets."""
    config = config or Config.from_env()
    logformat.configure(config.log_format)
    app = Flask(__name__)
    app.before_request(_bind_request_id)
    # A reconnect storm (a worker restarted under thousands of streams) borrows the pool for
    # thousands of replays at once: queue them rather than end streams after the web tier's
    # fail-fast wait, or each client comes back seconds later and the work is done twice.
    client = connect(config, pool_wait_seconds=STORM_POOL_WAIT_SECONDS)
    broker_ref: list[Broker] = []
    hub = Hub(on_last=lambda name: broker_ref[0].release(name))
    broker = Broker(config, hub, client, connect_pubsub(config))
    broker_ref.append(broker)
    state = StreamState(
        config=config,
        tokens=ChannelTokens(
            config.secret_keys,
            default_ttl_seconds=config.token_ttl_seconds,
            max_ttl_seconds=config.token_max_ttl_seconds,
            max_token_bytes=config.max_token_bytes,
        ),
        hub=hub,
        broker=broker,
        redis=client,
        loop=gevent.get_hub().loop,
        cors_origins=frozenset(config.cors_origins),
        limits=StreamLimits(client, config),
    )
    app.extensions["eventgate.stream"] = state
    app.register_blueprint(views.bp)
    app.register_blueprint(metrics.bp)
    errors.register(app)
    app.wsgi_app = Handover(app.wsgi_app)
    broker.start()
    state.greenlets = [gevent.spawn(heartbeat.run, hub, config.heartbeat_seconds)]
    state.greenlets.append(gevent.spawn(state.limits.keep))
    state.metrics = metrics.StreamMetrics(hub, broker, app_registry())
    state.greenlets.append(gevent.spawn(metrics.run, state))
    return app


def _bind_request_id() -> None:
    # nginx's X-Request-ID on every line this request logs (shared/logformat.py).
    logformat.bind_request_id(request.headers.get("X-Request-ID"))
