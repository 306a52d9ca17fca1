"""The ops status page at ``/status``: live counters and a chart, fed by SSE itself.

The page asks ``POST /status/token`` for a short token for ``eventgate.status`` only, opens an
EventSource on it and draws each status event the web app publishes (web/statusfeed.py): open
streams, events delivered per second, queues, lag, Redis memory, per worker.

Who may see it: it shows the gateway's size and health, not its traffic (no channel data, no
tokens), but that is still nobody else's business. So the page and its token endpoint answer
only (a) in development (``EVENTGATE_ENV=development``, the default, on a loopback stack), or
(b) with HTTP basic auth whose password is ``EVENTGATE_OPS_KEY`` (any user name), compared in
constant time. Anywhere else they answer 404, as if they did not exist. Basic auth is what a
browser can do with no login page; use it over HTTPS only.
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, render_template, request

from eventgate.web.auth import key_matches
from eventgate.web.errors import error_response
from eventgate.web.extension import current_eventgate
from eventgate.web.isotime import iso_utc
from eventgate.web.statusfeed import STATUS_CHANNEL, STATUS_EVENT_TYPE

TOKEN_TTL_SECONDS = 300

_PAGE_HEADERS = {
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": (
        "default-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; "
        "form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}

bp = Blueprint("opspage", __name__)


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


@bp.after_request
def _page_headers(response: Response) -> Response:
    for name, value in _PAGE_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


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
