"""PublishKey: a publisher bearer key and the channels it may publish to and hand out in tokens.

Each comma-separated entry of ``EVENTGATE_PUBLISH_KEY`` is one key::

    KEY                           may publish to, and mint tokens for, every channel
    KEY:orders.*+users.7          only these grants (exact names or ``prefix.*``), joined by ``+``

``KEY`` is everything before the first ``:``; keys are printable ASCII without whitespace, ``,``
or ``:`` (what ``secrets.token_urlsafe`` and base64 produce), so the syntax is unambiguous, and a
grant can never be mistaken for part of a key. Revoking a key is removing its entry.

Threat: a backend holding a restricted key (a billing service, a partner integration) must not be
able to write to, or mint tokens reading, channels outside its scope. The key itself is a secret:
it is never in a repr, a log line or an error message (entries are named by position).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from eventgate.shared.errors import ConfigError, InvalidName
from eventgate.shared.names import grant_covers, grant_within, validate_grant

_KEY = re.compile(r"[\x21-\x7e]+")
_NOT_IN_KEY = (",", ":")
SCOPE_SEPARATOR = ":"
GRANT_SEPARATOR = "+"


@dataclass(frozen=True)
class PublishKey:
    """One configured publisher key. ``scope`` is None for an unrestricted key, else the grants
    (exact channels and ``prefix.*``) the key is limited to."""

    key: str = field(repr=False)
    scope: tuple[str, ...] | None = None

    def allows_channel(self, channel: str) -> bool:
        """May this key publish to ``channel`` (a validated channel name)?"""
        return self.scope is None or any(grant_covers(s, channel) for s in self.scope)

    def allows_grant(self, grant: str) -> bool:
        """May this key mint a token holding ``grant`` (a validated exact name or prefix.*)?"""
        return self.scope is None or any(grant_within(grant, s) for s in self.scope)


def parse_publish_key(spec: str, position: int = 1) -> PublishKey:
    """One entry of ``EVENTGATE_PUBLISH_KEY``. Raises ConfigError naming the entry by its
    ``position`` (1-based), never by its text."""
    key, sep, scope_text = spec.strip().partition(SCOPE_SEPARATOR)
    where = f"publisher key #{position} of EVENTGATE_PUBLISH_KEY"
    if not _KEY.fullmatch(key) or any(char in key for char in _NOT_IN_KEY):
        raise ConfigError(
            f"{where} is empty or holds a character keys may not have (whitespace, ',', ':' or "
            "non-ASCII)."
        )
    if not sep:
        return PublishKey(key)
    grants = scope_text.split(GRANT_SEPARATOR)
    try:
        scope = tuple(dict.fromkeys(validate_grant(grant) for grant in grants))
    except InvalidName:
        raise ConfigError(
            f"{where} has a malformed channel scope: after ':' list channel names or prefix.* "
            "grants joined by '+', e.g. KEY:orders.*+users.7."
        ) from None
    return PublishKey(key, scope)


@functools.lru_cache(maxsize=16)
def parse_publish_keys(specs: tuple[str, ...]) -> tuple[PublishKey, ...]:
    """Every configured key (cached: the web app asks on every request)."""
    return tuple(parse_publish_key(spec, index) for index, spec in enumerate(specs, 1))


def forbidden_channels(key: PublishKey, channels: Iterable[str]) -> list[str]:
    """The channels of ``channels`` that ``key`` may not publish to, in order."""
    return [channel for channel in channels if not key.allows_channel(channel)]
