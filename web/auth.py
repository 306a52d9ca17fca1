"""The publisher key check: ``Authorization: Bearer <key>`` against the configured publish keys.

Threat: the publish and token APIs let the caller write to any channel and read any channel (by
minting tokens), so the key is the whole of their security. It is compared in constant time
against every configured key (no early exit reveals which key or how much of it matched), and it
is never echoed, logged or put in an error message.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable

from flask import Response, request

from web.errors import error_response
from web.extension import current_eventgate

_SCHEME = "bearer"


def key_matches(given: str, keys: Iterable[str]) -> bool:
    """True when ``given`` equals one of ``keys``; looks at every key whatever the outcome."""
    given_bytes = given.encode("utf-8", "surrogateescape")
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(given_bytes, key.encode("utf-8", "surrogateescape"))
    return matched


def require_publish_key() -> Response | None:
    """A ``before_request`` hook: None when the request carries a valid publisher key, else the
    401 JSON refusal (with ``WWW-Authenticate: Bearer``)."""
    scheme, _, given = request.headers.get("Authorization", "").strip().partition(" ")
    given = given.strip()
    keys = current_eventgate().config.publish_keys
    if scheme.lower() == _SCHEME and given and key_matches(given, keys):
        return None
    return error_response(
        "unauthorized",
        "a valid publisher key is required: send it as `Authorization: Bearer <key>`.",
        401,
        {"WWW-Authenticate": "Bearer"},
    )
