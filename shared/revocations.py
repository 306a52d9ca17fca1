"""Revoking a token subject: its open streams end, its tokens issued until now are refused.

A revocation is one Redis key per subject (``keys.revoked_key``) holding when it happened, in
epoch seconds of the revoking host's clock — the kind of clock that signs tokens — and expiring
after ``token_max_ttl_seconds``, the longest a token it could refuse stays valid. A later
revocation overwrites it. Stream workers read it once per stream open that has a subject
(stream/limits.py, in the round trip that takes the subject's lease), never per event; a
control message (``keys.CONTROL_CHANNEL``) tells every worker of every node to end the subject's
open streams now.

Same second: a token's issue time is itsdangerous's signing timestamp, in whole seconds, so a
token signed in the second of a revocation cannot be told apart from one signed just before it.
Such a token is refused (``issued_at <= revoked_at``): mint the new token at least one second
after the revocation. Hosts whose clocks disagree shift that boundary by their skew.
"""

from __future__ import annotations

import json
import time

import redis

from eventgate.shared import keys

#: The ``op`` of a control message telling stream workers to end a subject's streams.
REVOKE_OP = "revoke"


def validate_subject(subject: object) -> str:
    """``subject`` if it is a token subject (text of 1 to 128 characters); else ValueError."""
    if not isinstance(subject, str) or not 0 < len(subject) <= 128:
        raise ValueError("subject must be a string of 1 to 128 characters")
    try:
        subject.encode("utf-8")
    except UnicodeError:
        raise ValueError("subject must be valid Unicode text") from None
    return subject


def revoke(client: redis.Redis, subject: str, ttl_seconds: int) -> float:
    """Revoke ``subject`` now; returns the revocation time (epoch seconds). Raises ValueError
    for a bad subject and redis errors when Redis does not take it."""
    validate_subject(subject)
    revoked_at = time.time()
    client.set(keys.revoked_key(subject), repr(revoked_at), ex=ttl_seconds)
    # After the key: a stream ended by the message reconnects and must find it.
    client.publish(keys.CONTROL_CHANNEL, control_message(subject, revoked_at))
    return revoked_at


def control_message(subject: str, revoked_at: float) -> str:
    """The control message ending ``subject``'s open streams, revoked at ``revoked_at``."""
    return json.dumps(
        {"op": REVOKE_OP, "subject": subject, "revoked_at": revoked_at}, separators=(",", ":")
    )


def parse_control(message: bytes | str) -> tuple[str, float] | None:
    """``(subject, revoked_at)`` of a revocation's control message; None for any other (or a
    malformed) message."""
    try:
        body = json.loads(message)
    except ValueError:
        return None
    if not isinstance(body, dict) or body.get("op") != REVOKE_OP:
        return None
    subject, revoked_at = body.get("subject"), body.get("revoked_at")
    if not isinstance(subject, str) or not isinstance(revoked_at, (int, float)):
        return None
    return subject, float(revoked_at)


def is_revoked(revoked_at: bytes | str | None, issued_at: float) -> bool:
    """Whether a token signed at ``issued_at`` falls to the revocation stored as ``revoked_at``
    (the key's value, None when there is none): signed in the same second or before."""
    if revoked_at is None:
        return False
    try:
        return issued_at <= float(revoked_at)
    except ValueError:
        return False
