"""The ops status page at ``/status`` and the status feed that draws it: the gateway watched
through the gateway itself.

The feed (``StatusFeed``): every ``status_interval_seconds`` one web worker (whichever takes a
short Redis lock first, so several workers and several machines publish one event per interval
between them) publishes the overview (shared/status.py) as an event of type ``status`` on
``STATUS_CHANNEL``. The page asks ``POST /status/token`` for a short token for that channel only,
opens an EventSource on it and draws each event: open streams, events delivered per second,
queues, lag, Redis memory, per worker. If its counters move, publish, fan-out and the stream path
all work.

The channel is an ordinary channel name reserved by convention for ops; only the page mints
tokens for it, and its events carry counts, never tokens, keys or subjects. ``init_app`` builds
the feed but starts nothing: the web pool's gunicorn hook starts it (web/gunicorn_conf.py), one
daemon thread per worker, so apps built in tests or shells publish nothing.

Who may see the page: it shows the gateway's size and health, not its traffic (no channel data,
no tokens), but that is still nobody else's business. So the page and its token endpoint answer
only (a) in development (``EVENTGATE_ENV=development``, the default, on a loopback stack), or
(b) with HTTP basic auth whose password is ``EVENTGATE_OPS_KEY`` (any user name), compared in
constant time. Anywhere else they answer 404, as if they did not exist. Basic auth is what a
browser can do with no login page; use it over HTTPS only.
"""

from __future__ import annotations

import logging
import threading

import redis
from flask import Blueprint, Flask, Response, jsonify, render_template, request

from eventgate.shared import keys, pools
from eventgate.shared.errors import EventgateError
from eventgate.shared.status import overview
from eventgate.web import pages
from eventgate.web.auth import key_matches
from eventgate.web.errors import error_response
from eventgate.web.extension import EXTENSION_KEY, EventGate, current_eventgate
from eventgate.web.isotime import iso_utc

STATUS_CHANNEL = "eventgate.status"
STATUS_EVENT_TYPE = "status"
#: Status events kept in the channel's log (about ten minutes at the default interval): each
#: holds every worker's record, so the global retention (10,000 events) could cost Redis
#: megabytes for history nobody replays.
STATUS_EVENTS_KEPT = 300
#: ``app.extensions`` key of the app's (unstarted) StatusFeed; web/gunicorn_conf.py starts it.
FEED_KEY = pools.STATUS_FEED_KEY
TOKEN_TTL_SECONDS = 300


log = logging.getLogger("eventgate.web.ops")
bp = Blueprint("ops", __name__)
pages.protect(bp, {"Cache-Control": "no-store"})  # live operational data: never cached


class StatusFeed:
    """Publishes the status event every interval from a daemon thread; ``stop()`` ends it."""

    def __init__(self, gate: EventGate) -> None:
        self.gate = gate
        self.interval_seconds = gate.config.status_interval_seconds
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="eventgate-status", daemon=True)

    def start(self) -> StatusFeed:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()

    def publish_once(self) -> str | None:
        """Publish one status event unless another worker did this interval; returns its id."""
        client = self.gate.client
        hold_ms = max(1, int(self.interval_seconds * 1000) - 50)
        if not client.set(keys.STATUS_FEED_LOCK, "1", nx=True, px=hold_ms):
            return None
        data = overview(client)
        data["at"] = iso_utc()
        event_id = self.gate.publish_now(STATUS_CHANNEL, data, STATUS_EVENT_TYPE)
        client.xtrim(keys.log_key(STATUS_CHANNEL), maxlen=STATUS_EVENTS_KEPT, approximate=True)
        return event_id

    def _run(self) -> None:
        while not self._stopped.wait(self.interval_seconds):
            try:
                self.publish_once()
            except (redis.RedisError, OSError, EventgateError) as error:
                log.debug("status event not published: %s", type(error).__name__)


def init_app(app: Flask) -> StatusFeed:
    """Serve the status page on ``app`` and give it a feed, not started (see above); call after
    EventGate."""
    feed = StatusFeed(app.extensions[EXTENSION_KEY])
    app.extensions[FEED_KEY] = feed
    app.register_blueprint(bp)
    return feed


@bp.before_request
def _only_for_ops() -> Response | None:
    config = current_eventgate().config
    if config.ops_key:
        auth = request.authorization
        given = auth.password if auth is not None and auth.type == "basic" else None
        if given and key_matches(given, [config.ops_key]):
            return None
        return error_response(
            "unauthorized", "the ops page needs the ops key as the basic-auth password.", 401,
            {"WWW-Authenticate": 'Basic realm="eventgate ops", charset="UTF-8"'},
        )
    if config.environment == "development":
        return None
    return error_response("not_found", "there is nothing at this URL.", 404)


@bp.get("/status")
def page() -> str:
    return render_template("status.html", channel=STATUS_CHANNEL, event_type=STATUS_EVENT_TYPE)


@bp.post("/status/token")
def token():  # type: ignore[no-untyped-def]
    """A token for the status channel only, valid for a few minutes."""
    gate = current_eventgate()
    ttl = min(TOKEN_TTL_SECONDS, gate.config.token_max_ttl_seconds)
    token, expires_at = gate.token_for([STATUS_CHANNEL], "ops-status-page", ttl)
    return jsonify(token=token, expires_at=iso_utc(expires_at)), 201
