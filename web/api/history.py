"""GET /api/channels/<channel>/events: a page of a channel's retained log, for backend code
holding the publisher key (a key restricted to grants reads only the channels it may publish to).

The page itself — parameters, JSON, ``next`` — is shared/history.py's, which the stream pool's
``/streams/history`` answers with too; this view adds the key's scope and the ``Link`` header.
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from eventgate.shared.errors import RedisUnreachable
from eventgate.shared.history import next_link, read_history
from eventgate.shared.names import validate_channel
from eventgate.web.auth import require_scope
from eventgate.web.errors import error_response
from eventgate.web.extension import current_eventgate

bp = Blueprint("history", __name__)


@bp.get("/channels/<channel>/events")
def channel_events(channel: str) -> Response:
    """Query: ``after``? (an event id), ``limit``? (1–1000, default 100) → the page."""
    require_scope([validate_channel(channel)], verb="read")
    try:
        page = read_history(
            current_eventgate().client, channel, request.args.get("after"),
            request.args.get("limit"),
        )
    except RedisUnreachable as error:
        # Not the generic 500 of the app's handler: the caller may retry in a moment.
        return error_response(
            error.code, error.message, 503, {"Retry-After": str(error.retry_after)}
        )
    response = jsonify(page)
    response.headers.update(next_link(request.path, request.args.to_dict(flat=False), page))
    return response
