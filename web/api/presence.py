"""GET /api/channels/<channel>/presence: who holds a stream on a channel, across every worker
and node, read from the channel's presence leases (shared/presence.py), expired ones pruned first
(and the leaves they make due written, on channels that announce them).
"""

from __future__ import annotations

from datetime import UTC, datetime

import redis
from flask import Blueprint, Response, jsonify
from redis.exceptions import RedisClusterException

from eventgate.shared.errors import RedisUnreachable
from eventgate.shared.names import validate_channel
from eventgate.shared.presence import PresenceScript
from eventgate.web.errors import error_response
from eventgate.web.extension import current_eventgate
from eventgate.web.isotime import iso_utc

bp = Blueprint("presence", __name__)


@bp.get("/channels/<channel>/presence")
def channel_presence(channel: str) -> Response:
    """``{"channel", "streams", "subjects": [{"subject", "streams", "since"}]}``; 400 for a bad
    channel name, 503 when Redis does not answer."""
    channel = validate_channel(channel)
    gate = current_eventgate()
    try:
        found = PresenceScript(gate.client, gate.config).read(channel)
    except (redis.RedisError, RedisClusterException) as error:
        refusal = RedisUnreachable.answering(error, "presence cannot be read; retry in a moment.")
        return error_response(
            refusal.code, refusal.message, 503, {"Retry-After": str(refusal.retry_after)}
        )
    return jsonify(
        channel=found.channel,
        streams=found.streams,
        subjects=[
            {
                "subject": holder.subject,
                "streams": holder.streams,
                "since": iso_utc(datetime.fromtimestamp(holder.since_ms / 1000, UTC)),
            }
            for holder in found.holders
        ],
    )
