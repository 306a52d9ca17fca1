"""The main web app: publishes events, mints stream tokens, serves the publisher API and the demo.

Blocking workers only: this app never holds a stream (the stream pool does, under gevent), so a
request here lasts as long as one Redis round trip at most.
"""

from __future__ import annotations

from flask import Flask, request
from flask.logging import default_handler

from shared import logformat
from shared.config import Config
from web import api, demo, health, metrics, opspage
from web.errors import register_error_handlers
from web.extension import EventGate

#: Request bodies above this are refused with 413 whatever the batch settings allow.
MAX_REQUEST_BYTES_CAP = 4 * 1024 * 1024
# Room for the JSON around one event's data (channel, type, field names, escapes).
_EVENT_OVERHEAD_BYTES = 1024


def max_request_bytes(config: Config) -> int:
    """The largest request body accepted: a full batch of full-size events, capped at
    ``MAX_REQUEST_BYTES_CAP`` — but always enough for one full-size event, even escaped."""
    batch = config.max_batch_events * (config.max_event_bytes + _EVENT_OVERHEAD_BYTES)
    one_event = 2 * config.max_event_bytes + _EVENT_OVERHEAD_BYTES
    return max(min(batch, MAX_REQUEST_BYTES_CAP), one_event)


def create_app(config: Config | None = None) -> Flask:
    """Build the web app from ``config`` (default: ``Config.from_env()``). Opens no connection."""
    config = Config.from_env() if config is None else config
    logformat.configure(config.log_format)
    app = Flask(__name__)
    app.logger.removeHandler(default_handler)  # the root handler formats every line
    app.before_request(_bind_request_id)
    app.config["MAX_CONTENT_LENGTH"] = max_request_bytes(config)
    # Registered first so that its after-request publish runs after every other hook.
    EventGate(app, config)
    register_error_handlers(app)
    app.register_blueprint(api.bp)
    app.register_blueprint(health.bp)
    app.register_blueprint(demo.bp)
    app.register_blueprint(opspage.bp)
    metrics.init_app(app)
    return app


def _bind_request_id() -> None:
    # nginx's X-Request-ID on every line this request logs (shared/logformat.py).
    logformat.bind_request_id(request.headers.get("X-Request-ID"))
