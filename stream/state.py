"""StreamState: what one stream worker process holds — config, tokens, hub, broker, clients."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import redis

from eventgate.shared.config import Config
from eventgate.shared.tokens import ChannelTokens
from eventgate.stream.broker import Broker
from eventgate.stream.hub import Hub
from eventgate.stream.limits import StreamLimits


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
    #: Admission of new streams (per worker, per subject); set by create_app.
    limits: StreamLimits | None = None
    #: stream.metrics.StreamMetrics, set by create_app.
    metrics: object = None
    started_at: float = field(default_factory=time.time)
    #: stream.acceptor.Acceptor, when the accept fast path serves this worker's listeners.
    acceptor: object = None
    #: Recent lag histogram snapshots (stream/status.py diffs the newest against the oldest).
    status_lag: object = None
