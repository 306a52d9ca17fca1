"""Channel-name, event-type and idempotency-key validation: the contract's alphabet, enforced at
every entry.

Threat: every name reaches the SSE wire (``event:`` lines) or a Redis key. A CR, LF or NUL — even a
bare CR — would let a publisher inject ``id:``/``event:`` fields into every subscriber's stream, and
glob characters would widen a pattern subscription. So names are whitelisted, never escaped.
"""

from __future__ import annotations

import re

from eventgate.shared.errors import InvalidName, InvalidRequest
from eventgate.shared.sse import CONTROL_PREFIX

_CHANNEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
_EVENT_TYPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")
_IDEMPOTENCY_KEY = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_GRANT_SUFFIX = ".*"


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def validate_channel(name: object) -> str:
    """Return ``name`` if it is a valid channel name, else raise InvalidName (a 400)."""
    if not isinstance(name, str) or not _CHANNEL.fullmatch(name):
        raise InvalidName(
            f"channel name {_shown(name)} is invalid: use 1 to 128 characters of"
            " A-Z a-z 0-9 . _ : -, starting with a letter or digit.",
            str(name),
        )
    return name


def validate_event_type(name: object) -> str:
    """Return ``name`` if it is a valid publishable event type, else raise InvalidName."""
    if not isinstance(name, str) or not _EVENT_TYPE.fullmatch(name):
        raise InvalidName(
            f"event type {_shown(name)} is invalid: use 1 to 64 characters of A-Z a-z 0-9 . _ : -,"
            " starting with a letter or digit.",
            str(name),
        )
    if name.startswith(CONTROL_PREFIX):
        raise InvalidName(
            f"event type {_shown(name)} is reserved: types starting with "
            f"{CONTROL_PREFIX!r} are eventgate's own control events.",
            name,
        )
    return name


def validate_idempotency_key(key: object) -> str:
    """Return ``key`` if it is a valid ``Idempotency-Key``, else raise InvalidRequest (a 400).
    It becomes part of a Redis key name, so it is whitelisted like a channel name."""
    if not isinstance(key, str) or not _IDEMPOTENCY_KEY.fullmatch(key):
        raise InvalidRequest(
            f"idempotency key {_shown(key)} is invalid: use 1 to 128 characters of"
            " A-Z a-z 0-9 . _ : -."
        )
    return key


def validate_grant(grant: object) -> str:
    """A grant is an exact channel name or ``prefix.*`` (every channel under ``prefix.``)."""
    if isinstance(grant, str) and grant.endswith(_GRANT_SUFFIX):
        validate_channel(grant[: -len(_GRANT_SUFFIX)])
        return grant
    return validate_channel(grant)


def grant_covers(grant: str, channel: str) -> bool:
    """True when ``grant`` (exact or ``prefix.*``) covers ``channel``."""
    if grant.endswith(_GRANT_SUFFIX):
        return channel.startswith(grant[:-1])
    return grant == channel


def grant_within(grant: str, scope: str) -> bool:
    """True when every channel ``grant`` covers is covered by ``scope`` (both exact or
    ``prefix.*``), so that a credential limited to ``scope`` may hand ``grant`` on.

    ``users.7.*`` is within ``users.*``, never the reverse; ``users.7`` is not within
    ``users.7.*`` (a prefix grant covers what is *under* the prefix, not the prefix itself); a
    prefix grant is never within an exact scope.
    """
    if grant.endswith(_GRANT_SUFFIX):
        return scope.endswith(_GRANT_SUFFIX) and grant[:-1].startswith(scope[:-1])
    return grant_covers(scope, grant)
