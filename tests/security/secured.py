"""The security package's deployed stack and what its tests need to attack it: the one CORS
origin it allows, the restricted publisher key's scope, and the register of every secret used."""

from __future__ import annotations

from dataclasses import dataclass, field

from eventgate.shared.tokens import ChannelTokens
from tests.stack import Stack

#: The one origin the secured stack allows cross-origin streams from.
ORIGIN = "http://app.example.test"
#: Channels the restricted publisher key may publish to (and mint tokens for).
RESTRICTED_SCOPE = ("sec.orders.*", "sec.users.7")


@dataclass
class Secured:
    """The package's stack and what the tests need to attack it."""

    stack: Stack
    restricted_key: str
    old_secret: str
    tokens: ChannelTokens  # signs with the current key
    old_tokens: ChannelTokens  # signs with the old key, which the stack still accepts

    @property
    def port(self) -> int:
        return self.stack.port


@dataclass
class SecretRegister:
    """Every token and key the tests handed to a server: none may ever appear in a log."""

    values: set[str] = field(default_factory=set)

    def add(self, *values: str) -> None:
        self.values.update(v for v in values if v)
