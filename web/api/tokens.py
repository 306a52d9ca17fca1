"""POST /api/tokens: mint a stream token, for backend code holding the publisher key.

Backend code calls this for a user it has authenticated, then hands the token to that user's
browser for ``EventSource("/streams?token=…")``. The token grants exactly the listed channels
(or ``prefix.*``) until ``expires_at``; it is a bearer credential, so the answer is not cacheable.
"""

from __future__ import annotations

from flask import Blueprint, jsonify

from eventgate.shared.errors import InvalidName, InvalidRequest
from eventgate.shared.names import validate_grant
from eventgate.web.auth import require_scope
from eventgate.web.extension import current_eventgate
from eventgate.web.isotime import iso_utc
from eventgate.web.jsonio import read_fields, read_json

bp = Blueprint("tokens", __name__)


@bp.post("/tokens")
def issue_token():  # type: ignore[no-untyped-def]
    """Body: ``{"channels": [...], "ttl"?: seconds, "subject"?: str}``; answers ``201`` with
    ``{"token", "expires_at"}``."""
    gate = current_eventgate()
    body = read_fields(read_json(), "the body", ("channels",), ("ttl", "subject"))
    channels = body["channels"]
    if not isinstance(channels, list) or not channels:
        raise InvalidRequest(
            "channels must be a non-empty array of channel names or prefix.* grants."
        )
    # Validated (400 for a malformed name) before the scope check (403), as the token would be.
    require_scope([validate_grant(channel) for channel in channels], grants=True)
    try:
        token, expires_at = gate.token_for(channels, body.get("subject"), body.get("ttl"))
    except InvalidName:
        raise
    except ValueError as error:
        raise InvalidRequest(f"{error}.") from None
    response = jsonify(token=token, expires_at=iso_utc(expires_at))
    response.headers["Cache-Control"] = "no-store"
    return response, 201
