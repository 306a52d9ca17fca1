"""ChannelTokens: issue(channels, subject, ttl) -> IssuedToken / verify(token) -> Grant.

Threat model: a stream token is a bearer credential that travels in a URL (EventSource cannot send
headers), so it is short-lived by default, bounded in length (checked before any HMAC work), signed
with a salt of its own (a token for anything else signed with the same key never verifies here),
and carries only grants — exact channels or ``prefix.*``. The payload is signed, not encrypted:
never put secrets in it. Keys rotate: the first configured key signs, every key verifies.
Tokens are itsdangerous's URL-safe timed signatures.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import NamedTuple

from itsdangerous import BadData, URLSafeTimedSerializer

from eventgate.shared.config import Config
from eventgate.shared.errors import ChannelNotGranted, TokenError, TokenExpired
from eventgate.shared.names import grant_covers, validate_channel, validate_grant

SALT = "eventgate.stream-token.v1"
_TOKEN_ALPHABET = re.compile(r"[A-Za-z0-9_.-]+")
_VERSION = 1
#: How far in the future a token's signing time may be (clock skew between hosts), seconds.
MAX_CLOCK_SKEW_SECONDS = 30


class IssuedToken(NamedTuple):
    """A freshly issued stream token and when it stops being valid (UTC). Unpacks:
    ``token, expires_at = tokens.issue([...])``."""

    token: str
    expires_at: datetime


@dataclass(frozen=True)
class Grant:
    """What a verified token allows: ``grants`` (exact channels and ``prefix.*``), the optional
    ``subject`` it was issued to, when it stops being valid and when it was signed (epoch
    seconds; ``issued_at`` is whole seconds, itsdangerous's timestamp: revocation compares it).
    """

    grants: tuple[str, ...]
    subject: str | None
    expires_at: float
    issued_at: float = 0.0

    def covers(self, channel: str) -> bool:
        return any(grant_covers(grant, channel) for grant in self.grants)

    def resolve(self, requested: Sequence[str]) -> list[str]:
        """The channels a stream should carry: ``requested`` (each must be granted), or, when none
        is requested, every exact channel the token grants. Order is kept, duplicates dropped.

        Raises InvalidName for a malformed requested name and ChannelNotGranted for one outside
        the grants; a ``prefix.*`` grant is a permission, not a subscription, so it must be
        narrowed with explicit channel names.
        """
        if requested:
            channels = list(dict.fromkeys(validate_channel(name) for name in requested))
            for channel in channels:
                if not self.covers(channel):
                    raise ChannelNotGranted(
                        f"the token does not grant channel {channel!r}.", channel
                    )
            return channels
        exact = [grant for grant in self.grants if not grant.endswith(".*")]
        if not exact:
            raise ChannelNotGranted(
                "the token grants only channel prefixes: name the channels with &channel=NAME.",
                "",
            )
        return exact


class ChannelTokens:
    """Issues and verifies stream tokens. ``secret_keys``: the first signs, all verify."""

    def __init__(
        self,
        secret_keys: Sequence[str],
        *,
        default_ttl_seconds: int = 600,
        max_ttl_seconds: int = 86400,
        max_token_bytes: int = 4096,
    ) -> None:
        if not secret_keys:
            raise ValueError("at least one secret key is required")
        # itsdangerous signs with the *last* key of the list and tries all of them to verify.
        self._serializer = URLSafeTimedSerializer(list(reversed(secret_keys)), salt=SALT)
        self.default_ttl_seconds = default_ttl_seconds
        self.max_ttl_seconds = max_ttl_seconds
        self.max_token_bytes = max_token_bytes

    @classmethod
    def from_config(cls, config: Config) -> ChannelTokens:
        """The tokens of ``config``: its secret keys, default and maximum ttl, maximum length."""
        return cls(
            config.secret_keys,
            default_ttl_seconds=config.token_ttl_seconds,
            max_ttl_seconds=config.token_max_ttl_seconds,
            max_token_bytes=config.max_token_bytes,
        )

    def issue(
        self,
        channels: Iterable[str],
        subject: str | None = None,
        ttl: int | None = None,
    ) -> IssuedToken:
        """A token granting ``channels`` (exact names or ``prefix.*``) to ``subject`` (any label
        of 1 to 128 characters, or None) for ``ttl`` seconds (default ``default_ttl_seconds``).

        Raises InvalidName for a bad grant, and ValueError for an empty grant list, a ttl outside
        1..max_ttl_seconds, a bad subject, or so many grants that the token would be longer than
        ``max_token_bytes`` (``verify`` would refuse it unread).
        """
        grants = list(dict.fromkeys(validate_grant(channel) for channel in channels))
        if not grants:
            raise ValueError("a token must grant at least one channel")
        ttl = self.default_ttl_seconds if ttl is None else ttl
        limit = self.max_ttl_seconds
        if isinstance(ttl, bool) or not isinstance(ttl, int) or not 1 <= ttl <= limit:
            raise ValueError(f"ttl must be a whole number of seconds from 1 to {limit}")
        if subject is not None and (not isinstance(subject, str) or not 0 < len(subject) <= 128):
            raise ValueError("subject must be a string of 1 to 128 characters")
        expires_at = int(time.time()) + ttl
        payload = {"v": _VERSION, "ch": grants, "exp": expires_at}
        if subject is not None:
            payload["sub"] = subject
        try:
            token = self._serializer.dumps(payload)
        except UnicodeError:  # a lone surrogate in the subject
            raise ValueError("subject must be valid Unicode text") from None
        if len(token) > self.max_token_bytes:
            raise ValueError(
                f"the token would be longer than {self.max_token_bytes} bytes: "
                "grant fewer channels or a prefix"
            )
        return IssuedToken(token, datetime.fromtimestamp(expires_at, UTC))

    def verify(self, token: object) -> Grant:
        """Return the Grant of a valid token. Raises TokenExpired (with ``expired_at``) or
        TokenError; messages never echo the token."""
        if not isinstance(token, str) or not token:
            raise TokenError("a stream token is required.")
        if len(token) > self.max_token_bytes:
            raise TokenError(f"the token is longer than {self.max_token_bytes} bytes.")
        # itsdangerous decodes leniently (skips odd characters, extra padding): without this,
        # one token would have many spellings, CR/LF included, that all verify.
        if not _TOKEN_ALPHABET.fullmatch(token):
            raise TokenError("the token holds characters a token never has.")
        try:
            payload, signed_at = self._serializer.loads(token, return_timestamp=True)
        except (BadData, UnicodeError, ValueError):
            raise TokenError("the token is malformed or its signature is invalid.") from None
        now = time.time()
        # itsdangerous would call any token from the future "expired", and a client told that
        # fetches another one — from the same fast clock, forever. Allow a little skew between
        # the hosts that mint and check tokens; beyond it the token is simply invalid.
        age = now - signed_at.timestamp()
        if age < -MAX_CLOCK_SKEW_SECONDS:
            raise TokenError(
                "the token was issued in the future: the clocks of the servers that mint and "
                "check tokens disagree."
            )
        grant = self._grant_from(payload, signed_at.timestamp())
        if grant.expires_at <= now or age > self.max_ttl_seconds:
            raise TokenExpired("the token has expired.", grant.expires_at)
        return grant

    @staticmethod
    def _grant_from(payload: object, issued_at: float) -> Grant:
        invalid = TokenError("the token's payload is not a stream grant.")
        if not isinstance(payload, dict) or payload.get("v") != _VERSION:
            raise invalid
        raw_grants, subject, expires_at = payload.get("ch"), payload.get("sub"), payload.get("exp")
        if not isinstance(raw_grants, list) or not isinstance(expires_at, (int, float)):
            raise invalid
        if subject is not None and not isinstance(subject, str):
            raise invalid
        try:
            grants = tuple(validate_grant(g) for g in raw_grants)
        except ValueError:
            raise invalid from None
        return Grant(
            grants=grants, subject=subject, expires_at=float(expires_at), issued_at=issued_at
        )
