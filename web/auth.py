"""The publisher key check: ``Authorization: Bearer <key>`` against the configured publish keys.

Threat: the publish and token APIs let the caller write to any channel and read any channel (by
minting tokens), so the key is the whole of their security. It is compared in constant time
against every configured key (no early exit reveals which key or how much of it matched), and it
is never echoed, logged or put in an error message. A key may be restricted to channel grants
(``KEY:orders.*+users.7``, see shared/publishkeys.py): it then publishes and mints tokens only
within them (403 ``channel_forbidden`` otherwise). Revoking a key is removing it from the config.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Sequence

from flask import Response, request

from eventgate.shared.errors import ChannelNotGranted
from eventgate.shared.publishkeys import PublishKey, parse_publish_keys
from eventgate.web.errors import error_response
from eventgate.web.extension import current_eventgate

_SCHEME = "bearer"
# The matched key lives in the WSGI environ: it dies with the request.
_MATCHED = "eventgate.publish_key"


def key_matches(given: str, keys: Iterable[str]) -> bool:
    """True when ``given`` equals one of ``keys``; looks at every key whatever the outcome."""
    return matching_key(given, [PublishKey(key) for key in keys]) is not None


def matching_key(given: str, keys: Sequence[PublishKey]) -> PublishKey | None:
    """The configured key equal to ``given``, or None; compares with every key whatever the
    outcome, each in constant time."""
    given_bytes = given.encode("utf-8", "surrogateescape")
    found = None
    for entry in keys:
        equal = hmac.compare_digest(given_bytes, entry.key.encode("utf-8", "surrogateescape"))
        if equal and found is None:
            found = entry
    return found


def key_of(authorization: str, keys: Sequence[PublishKey]) -> PublishKey | None:
    """The configured key an ``Authorization`` header value carries (``Bearer <key>``), or
    None; every key is compared whatever the outcome (``matching_key``)."""
    scheme, _, given = authorization.strip().partition(" ")
    given = given.strip()
    return matching_key(given, keys) if scheme.lower() == _SCHEME and given else None


def require_publish_key() -> Response | None:
    """A ``before_request`` hook: None when the request carries a valid publisher key, else the
    401 JSON refusal (with ``WWW-Authenticate: Bearer``)."""
    keys = parse_publish_keys(current_eventgate().config.publish_keys)
    entry = key_of(request.headers.get("Authorization", ""), keys)
    if entry is not None:
        request.environ[_MATCHED] = entry
        return None
    return error_response(
        "unauthorized",
        "a valid publisher key is required: send it as `Authorization: Bearer <key>`.",
        401,
        {"WWW-Authenticate": "Bearer"},
    )


def require_scope(
    names: Iterable[str], *, grants: bool = False, verb: str = "publish to"
) -> None:
    """Raise ChannelNotGranted (403) for the first of ``names`` (validated channels, or with
    ``grants`` exact-or-prefix grants to put in a token) outside the request key's scope;
    ``verb`` names what the request does with them in the refusal."""
    entry: PublishKey = request.environ[_MATCHED]
    allowed = entry.allows_grant if grants else entry.allows_channel
    for name in names:
        if not allowed(name):
            what = "grant" if grants else verb
            raise ChannelNotGranted(
                f"this publisher key may not {what} channel {name!r}: it is restricted to "
                f"{', '.join(entry.scope or ())}.",
                name,
            )



def key_is_restricted() -> bool:
    """Whether the request's publisher key is restricted to channel grants (it may then do
    nothing that acts beyond channels, such as revoking a token subject)."""
    entry: PublishKey = request.environ[_MATCHED]
    return entry.scope is not None
