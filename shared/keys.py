"""Every Redis key and pub/sub channel name eventgate uses; nobody else builds key strings.

A channel's log (a Redis Stream) and its live pub/sub channel share the hash tag ``{channel}`` so
that both land on one shard under Redis Cluster with sharded pub/sub.
"""

from __future__ import annotations

import hashlib

PREFIX = "eventgate:"
_LIVE_SUFFIX = ":live"


def log_key(channel: str) -> str:
    """The Redis Stream holding ``channel``'s retained events: the source of truth."""
    return f"{PREFIX}{{{channel}}}:log"


def live_channel(channel: str) -> str:
    """The pub/sub channel carrying ``channel``'s events as they are published: the fast path."""
    return f"{PREFIX}{{{channel}}}{_LIVE_SUFFIX}"


def channel_of_live(name: str) -> str:
    """Inverse of ``live_channel``."""
    return name[len(PREFIX) + 1 : -len(_LIVE_SUFFIX) - 1]


def subject_streams_key(subject: str) -> str:
    """The sorted set of a token subject's open streams (connection id -> lease expiry).

    The subject is any text a backend chose (up to 128 characters): it is hashed, so the key is
    short, ASCII, and says nothing about who the subject is to someone reading Redis keys.
    """
    digest = hashlib.sha256(subject.encode("utf-8", "surrogatepass")).hexdigest()[:32]
    return f"{PREFIX}subject:{digest}:streams"


def idempotency_key(key: str) -> str:
    """The record of the publish made with ``Idempotency-Key: key``: the request's fingerprint
    and the ids it was answered with, until it expires. One namespace for every publisher key:
    two backends that share an eventgate must not share key values."""
    return f"{PREFIX}idempotency:{key}"


#: A hash: stream worker id (``host:pid``) -> its JSON status record (stream/status.py).
WORKERS = f"{PREFIX}workers"
#: Held for a moment by the web worker that publishes the ops status event (web/ops.py).
STATUS_FEED_LOCK = f"{PREFIX}status-feed-lock"
