"""eventgate: a real-time SSE event gateway for Flask shops.

The public API, on one screen. Publish from a Flask app with :class:`EventGate`, from a job worker
with :class:`Publisher` (``Publisher.from_url(url)``); mint stream tokens for browsers with
:class:`ChannelTokens`; every setting is a field of :class:`Config`. Every refusal is an
:class:`EventgateError` whose subclass carries the contract's error code and HTTP status.

This module only re-exports. It does so lazily (PEP 562): the subpackages ``eventgate.shared``,
``eventgate.web``, ``eventgate.stream`` and ``eventgate.deploy`` import through this package, and
an eager ``from eventgate.web.extension import EventGate`` here would load Flask into every
process that only needs ``eventgate.shared`` and load the web app into the stream pool.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

#: public name -> the module that defines it
_EXPORTS = {
    "Config": "eventgate.shared.config",
    "ChannelTokens": "eventgate.shared.tokens",
    "Grant": "eventgate.shared.tokens",
    "IssuedToken": "eventgate.shared.tokens",
    "Publisher": "eventgate.shared.publisher",
    "Draft": "eventgate.shared.publisher",
    "Stored": "eventgate.shared.publisher",
    "EventGate": "eventgate.web.extension",
    "Outbox": "eventgate.shared.outbox",
    "outbox_table": "eventgate.shared.outboxtable",
    "EventgateError": "eventgate.shared.errors",
    "ConfigError": "eventgate.shared.errors",
    "InvalidName": "eventgate.shared.errors",
    "InvalidEvent": "eventgate.shared.errors",
    "InvalidRequest": "eventgate.shared.errors",
    "InvalidJSON": "eventgate.shared.errors",
    "InvalidCursor": "eventgate.shared.errors",
    "TokenError": "eventgate.shared.errors",
    "TokenExpired": "eventgate.shared.errors",
    "TokenRevoked": "eventgate.shared.errors",
    "ChannelNotGranted": "eventgate.shared.errors",
    "PublishError": "eventgate.shared.errors",
    "NotDurable": "eventgate.shared.errors",
    "RedisFull": "eventgate.shared.errors",
    "RedisUnreachable": "eventgate.shared.errors",
    "IdempotencyKeyReused": "eventgate.shared.errors",
    "TooBusy": "eventgate.shared.errors",
    "TooManyStreams": "eventgate.shared.errors",
    "TooManyChannels": "eventgate.shared.errors",
    "StreamFailed": "eventgate.shared.errors",
    "UnsupportedServer": "eventgate.shared.errors",
    "__version__": "eventgate.shared.version",
}

__all__ = [
    "ChannelNotGranted",
    "ChannelTokens",
    "Config",
    "ConfigError",
    "Draft",
    "EventGate",
    "EventgateError",
    "Grant",
    "IdempotencyKeyReused",
    "InvalidCursor",
    "InvalidEvent",
    "InvalidJSON",
    "InvalidName",
    "InvalidRequest",
    "IssuedToken",
    "NotDurable",
    "Outbox",
    "PublishError",
    "Publisher",
    "RedisFull",
    "RedisUnreachable",
    "Stored",
    "StreamFailed",
    "TokenError",
    "TokenExpired",
    "TokenRevoked",
    "TooBusy",
    "TooManyChannels",
    "TooManyStreams",
    "UnsupportedServer",
    "__version__",
    "outbox_table",
]

#: public name -> the extra it needs beyond the base install (``pip install "eventgate[…]"``)
_EXTRAS = {"Outbox": "outbox", "outbox_table": "outbox"}

if TYPE_CHECKING:  # for type checkers and IDEs; at run time __getattr__ below does the work
    from eventgate.shared.config import Config
    from eventgate.shared.errors import (
        ChannelNotGranted,
        ConfigError,
        EventgateError,
        IdempotencyKeyReused,
        InvalidCursor,
        InvalidEvent,
        InvalidJSON,
        InvalidName,
        InvalidRequest,
        NotDurable,
        PublishError,
        RedisFull,
        RedisUnreachable,
        StreamFailed,
        TokenError,
        TokenExpired,
        TokenRevoked,
        TooBusy,
        TooManyChannels,
        TooManyStreams,
        UnsupportedServer,
    )
    from eventgate.shared.outbox import Outbox
    from eventgate.shared.outboxtable import outbox_table
    from eventgate.shared.publisher import Draft, Publisher, Stored
    from eventgate.shared.tokens import ChannelTokens, Grant, IssuedToken
    from eventgate.shared.version import __version__
    from eventgate.web.extension import EventGate


def __getattr__(name: str) -> object:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'eventgate' has no attribute {name!r}")
    try:
        module = import_module(_EXPORTS[name])
    except ModuleNotFoundError as error:
        if name not in _EXTRAS:
            raise
        raise ImportError(
            f"eventgate.{name} needs {error.name}: pip install \"eventgate[{_EXTRAS[name]}]\""
        ) from error
    value = getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
