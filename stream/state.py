"""StreamState: what one stream worker process holds — config, tokens, hub, broker, clients."""

from __future__ import annotations

from dataclasses import dataclass, field

import redis

from shared.config import Config
from shared.tokens import ChannelTokens
from stream.broker import Broker
from stream.hub import Hub


@dataclass
class StreamState:
    config: Config
    tokens: ChannelTokens
    hub: Hub
    broker: Broker
    redis: redis.Redis
    loop: object
    cors_origins: frozenset[str] = field(default_factory=frozenset)
    greenlets: list = field(default_factory=list)
