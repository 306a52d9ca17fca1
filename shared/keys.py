"""Every Redis key and pub/sub channel name eventgate uses; nobody else builds key strings.

A channel's log (a Redis Stream) and its live pub/sub channel carry the hash tag of the channel's
*partition* (``eventgate:{p17}:orders.42:log``), one of ``PARTITIONS``, chosen by a CRC of the
name. Under Redis Cluster a hash tag decides the slot, and a command that names several keys or
shard channels must keep to one slot: with a tag per channel, a stream worker reconnecting with
10,000 channels would need 10,000 SSUBSCRIBEs and 10,000 reads of the logs. With a tag per
partition it needs one SSUBSCRIBE and one XREAD per partition it holds channels of, at most
``PARTITIONS``, whatever the number of channels (and they are pipelined per shard). The price:
a partition cannot be split between shards, so no more than ``PARTITIONS`` shards share the load,
each holding whole partitions (128 partitions over 3 shards: 42 or 43 each).

The partition of a channel must never change: its log would be left behind. Changing
``PARTITIONS`` or the key form means moving every log (``eventgate migrate``, which reads both
this form and the per-channel form of eventgate 0.2).
"""

from __future__ import annotations

import hashlib
import zlib

PREFIX = "eventgate:"
#: How many hash-tag partitions the channels are spread over (see the module's docstring).
PARTITIONS = 128
_LOG_SUFFIX = ":log"
_LIVE_SUFFIX = ":live"
#: SCAN pattern matching every channel log (both key forms: ``{p7}:name:log``, ``{name}:log``).
LOG_PATTERN = f"{PREFIX}{{*}}*{_LOG_SUFFIX}"


def partition(channel: str) -> int:
    """The partition ``channel`` belongs to, for ever (0 .. PARTITIONS-1)."""
    return zlib.crc32(channel.encode()) % PARTITIONS


def partition_tag(number: int) -> str:
    """The hash tag of partition ``number``, braces included."""
    return f"{{p{number}}}"


def log_key(channel: str) -> str:
    """The Redis Stream holding ``channel``'s retained events: the source of truth."""
    return f"{PREFIX}{{p{partition(channel)}}}:{channel}{_LOG_SUFFIX}"


def live_channel(channel: str) -> str:
    """The pub/sub channel carrying ``channel``'s events as they are published: the fast path."""
    return f"{PREFIX}{{p{partition(channel)}}}:{channel}{_LIVE_SUFFIX}"


def channel_of_live(name: str) -> str:
    """Inverse of ``live_channel``."""
    return name[name.index("}:", len(PREFIX)) + 2 : -len(_LIVE_SUFFIX)]


def is_live(name: str) -> bool:
    """Whether a pub/sub channel name is a channel's live feed (not the broker's control one)."""
    return name.startswith(PREFIX) and name.endswith(_LIVE_SUFFIX) and "}:" in name


def channel_of_log(key: str) -> str | None:
    """The channel whose log ``key`` is, in this key form (whatever its partition count) or
    eventgate 0.2's (``eventgate:{name}:log``); None for a key that is no channel log."""
    if not (key.startswith(PREFIX + "{") and key.endswith(_LOG_SUFFIX)):
        return None
    body = key[len(PREFIX) + 1 : -len(_LOG_SUFFIX)]
    tag, closing, rest = body.partition("}")
    if not closing:
        return None
    if not rest:
        return tag  # eventgate 0.2: the channel is the tag
    number = tag[1:]
    if rest.startswith(":") and tag.startswith("p") and number.isascii() and number.isdigit():
        # Any partition tag, not only this version's: a log written with another PARTITIONS
        # is still a channel's log, which `eventgate migrate` moves under the current tag.
        return rest[1:]
    return None


def presence_key(channel: str) -> str:
    """The sorted set of the streams open on ``channel`` (``<subject or empty>|<opened ms>.<id>``
    -> lease expiry in Redis time), in the channel's partition slot (stream/presence.py)."""
    return f"{PREFIX}{{p{partition(channel)}}}:{channel}:presence"


def presence_subjects_key(channel: str) -> str:
    """A hash: subject -> its live streams on ``channel``, kept only on channels that announce
    joins and leaves (``EVENTGATE_PRESENCE_CHANNELS``), in the channel's slot."""
    return f"{PREFIX}{{p{partition(channel)}}}:{channel}:presence-subjects"


def presence_leaving_key(channel: str) -> str:
    """A sorted set: subject -> when its leave is due (its grace period over), on channels that
    announce joins and leaves, in the channel's slot."""
    return f"{PREFIX}{{p{partition(channel)}}}:{channel}:presence-leaving"


def _subject_tag(subject: str) -> str:
    """The hash tag of a token subject's keys: its digest, so that the keys are short, ASCII,
    and say nothing about who the subject is to someone reading Redis keys (a subject is any
    text a backend chose, up to 128 characters). One tag for all of them: under Redis Cluster
    the stream-admission script reads the revocation and writes the lease in one run."""
    return "{" + hashlib.sha256(subject.encode("utf-8", "surrogatepass")).hexdigest()[:32] + "}"


def subject_streams_key(subject: str) -> str:
    """The sorted set of a token subject's open streams (connection id -> lease expiry)."""
    return f"{PREFIX}subject:{_subject_tag(subject)}:streams"


def revoked_key(subject: str) -> str:
    """When a token subject was last revoked (epoch seconds, as text): its tokens signed at or
    before then are refused. It expires after the longest token lifetime, when no token it
    could refuse is still valid."""
    return f"{PREFIX}subject:{_subject_tag(subject)}:revoked"


def idempotency_key(key: str) -> str:
    """The record of the publish made with ``Idempotency-Key: key``: the request's fingerprint
    and the ids it was answered with, until it expires. One namespace for every publisher key:
    two backends that share an eventgate must not share key values.

    Under Redis Cluster this is the batch's record (its fingerprint only; shared/publisher.py):
    the key has no braces, so Cluster hashes it whole and it lands in a slot of its own derived
    from ``key``. Its name is the same as under one Redis, so that a repeat across a move of
    topology still finds it."""
    return f"{PREFIX}idempotency:{key}"


def partition_idempotency_key(key: str, number: int) -> str:
    """Under Redis Cluster, the record of the part of an ``Idempotency-Key: key`` batch that
    falls in partition ``number``: the batch's fingerprint and that part's ids, in the
    partition's slot, so that the part's script writes it in the same atomic run as its events."""
    return f"{PREFIX}{partition_tag(number)}:idempotency:{key}"


#: SCAN pattern matching every idempotency record: one Redis's, and a Cluster's batch and part
#: records (``eventgate migrate`` copies them between Redis of one kind).
IDEMPOTENCY_PATTERN = f"{PREFIX}*idempotency:*"

#: The plain pub/sub channel every stream worker's broker subscribes to (under Redis Cluster too:
#: a PUBLISH reaches every node's subscribers): control messages, JSON (stream/broker.py).
CONTROL_CHANNEL = f"{PREFIX}worker"

#: A hash: stream worker id (``host:pid``) -> its JSON status record (stream/status.py).
WORKERS = f"{PREFIX}workers"
#: A hash: ``eventgate relay`` program id (``host:pid``) -> its JSON status record
#: (eventgate/relayprogram.py). Not WORKERS: readers sum those as stream workers.
RELAYS = f"{PREFIX}relays"
#: Held for a moment by the web worker that publishes the ops status event (web/ops.py).
STATUS_FEED_LOCK = f"{PREFIX}status-feed-lock"
