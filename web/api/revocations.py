"""POST /api/revocations: revoke a token subject (a user logged out everywhere, an account closed).

Every open stream of the subject ends within a second with an ``eventgate.revoked`` event, and
its tokens issued until now are refused (401 ``token_revoked``); tokens minted afterwards work
(shared/revocations.py, and its rule for a token minted in the same second). It acts across
every channel, so a publisher key restricted to some channels may not revoke (403).
"""

from __future__ import annotations

import redis
from flask import Blueprint, jsonify

from eventgate.shared.errors import InvalidRequest
from eventgate.web.auth import key_is_restricted
from eventgate.web.errors import error_response
from eventgate.web.extension import current_eventgate
from eventgate.web.isotime import iso_utc
from eventgate.web.jsonio import read_fields, read_json

bp = Blueprint("revocations", __name__)


@bp.post("/revocations")
def revoke_subject():  # type: ignore[no-untyped-def]
    """Body: ``{"subject": str}``; answers ``201`` with ``{"subject", "revoked_at"}``."""
    if key_is_restricted():
        return error_response(
            "forbidden",
            "this publisher key is restricted to channels and may not revoke a token subject.",
            403,
        )
    body = read_fields(read_json(), "the body", ("subject",))
    try:
        revoked_at = current_eventgate().revoke(body["subject"])
    except ValueError as error:
        raise InvalidRequest(f"{error}.") from None
    except (redis.RedisError, OSError):
        return error_response(
            "redis_unreachable",
            "Redis did not store the revocation: nothing was revoked; retry.",
            503,
            {"Retry-After": "1"},
        )
    response = jsonify(subject=body["subject"], revoked_at=iso_utc(revoked_at))
    response.headers["Cache-Control"] = "no-store"
    return response, 201
