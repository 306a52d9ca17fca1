"""The main web app: publishes events, mints stream tokens, serves the publisher API and the demo.

Blocking workers only: this app never holds a stream (the stream pool does, under gevent), so a
request here lasts as long as one Redis round trip at most.
"""

from __future__ import annotations

from flask import Flask, request
from flask.logging import default_handler

from eventgate.shared import logformat
from eventgate.shared.config import MAX_REQUEST_BYTES_CAP, Config, max_request_bytes
from eventgate.web import demo, health, metrics, ops
from eventgate.web.api import blueprint as api
from eventgate.web.api import fastpath
from eventgate.web.errors import register_error_handlers
from eventgate.web.extension import EventGate

# In shared/ since nginx's client_max_body_size is rendered from the same number.
__all__ = ["MAX_REQUEST_BYTES_CAP", "create_app", "max_request_bytes"]



def create_app(config: Config | None = None) -> Flask:
    """Build the web app from ``config`` (default: ``Config.from_env()``). Opens no connection."""
    config = Config.from_env() if config is None else config
    logformat.configure(config.log_format)
    app = Flask(__name__)
    app.logger.removeHandler(default_handler)  # the root handler formats every line
    app.before_request(_bind_request_id)
    app.config["MAX_CONTENT_LENGTH"] = max_request_bytes(config)
    # Registered first so that its after-request publish runs after every other hook.
    gate = EventGate(app, config)
    register_error_handlers(app)
    app.register_blueprint(api.bp)
    app.register_blueprint(health.bp)
    app.register_blueprint(demo.bp)
    ops.init_app(app)
    metrics.init_app(app)
    fastpath.install(app, gate)
    return app


def _bind_request_id() -> None:
    # nginx's X-Request-ID on every line this request logs (shared/logformat.py).
    logformat.bind_request_id(request.headers.get("X-Request-ID"))
