"""The stream app: create_app(config) builds the stream app of one gevent worker process.

Run only under ``gunicorn -k gevent`` (see stream/gunicorn_conf.py and deploy/): the factory
starts the worker's hub greenlets, so it must run in the worker, after the fork — never with
``--preload``.
"""

from __future__ import annotations

from flask import Flask, request

from eventgate.shared import logformat
from eventgate.shared.config import Config
from eventgate.stream import metrics, views
from eventgate.stream.state import EXTENSION, StreamState


def create_app(config: Config | None = None) -> Flask:
    """Build the stream app and its worker state (stream/state.py), and start the worker's
    broker and greenlets."""
    config = config or Config.from_env()
    logformat.configure(config.log_format)
    app = Flask(__name__)
    app.before_request(_bind_request_id)
    state = StreamState.build(config)
    app.extensions[EXTENSION] = state
    views.install(app)
    app.register_blueprint(metrics.bp)
    state.start()
    return app


def _bind_request_id() -> None:
    # nginx's X-Request-ID on every line this request logs (shared/logformat.py).
    logformat.bind_request_id(request.headers.get("X-Request-ID"))
