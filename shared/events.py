"""Event and its two Redis forms (pub/sub payload, Stream entry): the format both sides agree on,
and reading a channel's log (the Stream) — the one place that knows an entry's fields.

Every stored event records ``prev``, the id of the event before it on its channel (``0-0`` for the
first one). A reader that holds position P and next sees an event whose ``prev`` is not P knows,
without trusting anything else, that events between were lost (trimmed, or a Redis restart without
persistence) — or that its live feed skipped some that it must read back from the log.

A reader's position can also be an id the log never had: after a failover the new primary may lack
the last events the old one confirmed, and its new events may get ids that sort below the position
(its clock runs behind). ``read_from`` notices it and moves the reader to the log's own chain; see
its docstring for the rule.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import NamedTuple

import redis

from eventgate.shared import keys
from eventgate.shared.errors import InvalidEvent

START = "0-0"
#: Entries read per XRANGE while replaying or backfilling: big enough that a resuming crowd costs
#: few round trips, small enough that one read never holds Redis or a worker for long.
READ_BATCH = 500


def encode_data(data: object, max_bytes: int) -> str:
    """Serialize ``data`` as compact one-line JSON, refusing what JSON cannot carry (NaN,
    non-string keys, sets…) and anything over ``max_bytes``. JSON escapes every control character,
    so the result never contains CR, LF or NUL and is safe on one ``data:`` line."""
    _refuse_non_string_keys(data)
    try:
        text = json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as error:
        raise InvalidEvent(f"data is not JSON: {error}.") from None
    if len(text.encode("utf-8")) > max_bytes:
        raise InvalidEvent(f"the event's data is larger than {max_bytes} bytes.")
    return text


def _refuse_non_string_keys(value: object) -> None:
    # json.dumps would silently turn {1: "a"} into {"1": "a"}: subscribers would get other data.
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if not all(isinstance(key, str) for key in item):
                raise InvalidEvent("data is not JSON: object keys must be strings.")
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)


def id_key(event_id: str) -> tuple[int, int]:
    """Order key of a Redis Stream id (``ms-seq``); raises ValueError when malformed."""
    ms, _, seq = event_id.partition("-")
    if not (ms.isdigit() and seq.isdigit()) or len(ms) > 20 or len(seq) > 20:
        raise ValueError(f"not a stream id: {event_id[:40]!r}")
    return int(ms), int(seq)


@dataclass(frozen=True)
class Event:
    """One stored event. ``data`` is the JSON text exactly as it goes on the wire."""

    channel: str
    id: str
    prev: str
    type: str
    data: str

    def to_payload(self) -> bytes:
        """The pub/sub payload (built by the publish script in Redis; here for tests and tools)."""
        return "\n".join((self.id, self.prev, self.type, self.data)).encode("utf-8")

    @classmethod
    def from_payload(cls, channel: str, payload: bytes) -> Event:
        event_id, prev, event_type, data = payload.decode("utf-8").split("\n", 3)
        return cls(channel, event_id, prev, event_type, data)

    @classmethod
    def from_entry(cls, channel: str, entry_id: bytes | str, fields: dict) -> Event:
        """From an ``XRANGE`` entry (bytes or str, as the client returns them)."""

        def text(value: bytes | str) -> str:
            return value.decode("utf-8") if isinstance(value, bytes) else value

        values = {text(k): text(v) for k, v in fields.items()}
        return cls(channel, text(entry_id), values["prev"], values["type"], values["data"])

    def to_json(self) -> dict:
        return {
            "channel": self.channel,
            "id": self.id,
            "type": self.type,
            "data": json.loads(self.data),
        }


# -- reading a channel's log ---------------------------------------------------------------------


def read_page(client: redis.Redis, channel: str, after: str, count: int = READ_BATCH) -> list:
    """Up to ``count`` raw entries of ``channel``'s log after the id ``after`` (exclusive), oldest
    first; fewer than ``count`` means the log's end was reached. Decode each with
    ``entry_fields`` (hot paths) or ``Event.from_entry``. A reader that follows the chain from a
    position it was delivered uses ``read_from``, which also notices a log that diverged."""
    return client.xrange(keys.log_key(channel), min=f"({after}", count=count)


class Page(NamedTuple):
    """What ``read_from`` read: ``entries`` (raw, oldest first) follow ``after`` in the log."""

    #: The reader's position, or — when the log no longer holds it but holds older events (a
    #: failover replaced the log) — the loss point the log goes on from.
    after: str
    entries: list


def read_from(client: redis.Redis, channel: str, position: str, count: int = READ_BATCH) -> Page:
    """Up to ``count`` entries of ``channel``'s log that follow the reader's ``position`` (an id
    it was delivered), and where they follow from; fewer than ``count`` means the log's end.

    The rule. The position is read inclusively (``XRANGE position + COUNT count+1``):
    - the log holds it (the common case, one round trip): the entries after it, ``after`` is
      the position;
    - the log does not hold it, nor anything older (it was trimmed away, the log expired, or
      the position is ``0-0``): the entries after it, ``after`` is the position; the first
      entry's ``prev`` then tells the reader what was lost, as always;
    - the log does not hold it but holds older entries: the log diverged from the reader's
      history (a failover to a replica that lacked the position; a Redis crash that lost its
      tail). ``after`` is the loss point P, the newest entry older than the position, and the
      entries are those after P (the log holds none between P and the position). The reader
      says ``eventgate.lost(last_seen=position, resumes_after=P)`` and goes on from P.

    The limit: the log cannot tell which of its entries older than the position the reader has
    seen. P is taken as seen. When the new primary's clock runs behind the old one's by more
    than the failover took, events it stored with ids below the position fall at or before P:
    they are inside the notice's range (reported lost, not delivered). With clocks in step,
    P is exactly the last event both logs share. An event the new primary stores under the
    very id of one the reader saw (possible only with such a clock) cannot be told apart.
    """
    if position == START:  # no entry sorts below it: nothing to tell apart
        return Page(START, read_page(client, channel, START, count))
    key = keys.log_key(channel)
    entries = client.xrange(key, min=position, count=count + 1)
    if entries and _text(entries[0][0]) == position:
        return Page(position, entries[1:])
    entries = entries[:count]
    older = client.xrevrange(key, max=f"({position}", count=1)
    return Page(_text(older[0][0]) if older else position, entries)


def entry_fields(entry_id: bytes | str, fields: dict) -> tuple[str, str, bytes | str, bytes | str]:
    """``(id, prev, type, data)`` of an XRANGE entry, without decoding type and data (bytes from
    our clients; str tolerated). A missing field raises KeyError."""
    try:
        return _text(entry_id), _text(fields[b"prev"]), fields[b"type"], fields[b"data"]
    except KeyError:
        event = Event.from_entry("", entry_id, fields)
        return event.id, event.prev, event.type, event.data


def read_heads(client: redis.Redis, channels: list[str]) -> dict[str, str]:
    """The id of the newest event of each channel (its log's last generated id), ``0-0`` for a
    channel that never had one. One round trip, plus one more only for emptied logs.

    The first round trip also asks whether each log exists: a channel with no log at all (never
    published to, or its log expired — most channels of a quiet site) is ``0-0`` at once,
    without the second round trip; only a log that exists with no entry (emptied) needs it."""
    if not channels:
        return {}
    pipe = client.pipeline(transaction=False)
    queue_heads(pipe, channels)
    return heads_from(client, channels, pipe.execute())


def queue_heads(pipe: redis.client.Pipeline, channels: list[str]) -> None:
    """Queue ``read_heads``'s first round trip on ``pipe`` (a caller that sends commands of its
    own in the same round trip); ``heads_from`` reads its replies, in the same order."""
    for name in channels:
        key = keys.log_key(name)
        pipe.xrevrange(key, count=1)
        pipe.exists(key)


def heads_from(client: redis.Redis, channels: list[str], replies: list) -> dict[str, str]:
    """``read_heads``'s answer from the replies of what ``queue_heads`` queued (raises the
    first of them that is an error); the second round trip, for emptied logs, on ``client``."""
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
    heads: dict[str, str] = {}
    emptied = []
    for name, newest, exists in zip(channels, replies[::2], replies[1::2], strict=True):
        if newest:
            heads[name] = _text(newest[0][0])
        else:
            heads[name] = START
            if exists:
                emptied.append(name)
    if emptied:
        pipe = client.pipeline(transaction=False)
        for name in emptied:
            pipe.xinfo_stream(keys.log_key(name))
        for name, info in zip(emptied, pipe.execute(raise_on_error=False), strict=True):
            if isinstance(info, dict) and info.get("last-generated-id"):
                heads[name] = _text(info["last-generated-id"])
    return heads


def read_newest(client: redis.Redis, channels: list[str], count: int) -> list[list]:
    """The newest ``count`` raw entries of each of ``channels``' logs, newest first (one list per
    channel, in order): one round trip, pipelined (per shard under Cluster)."""
    pipe = client.pipeline(transaction=False)
    for name in channels:
        pipe.xrevrange(keys.log_key(name), count=count)
    return pipe.execute()


def first_id(client: redis.Redis, channel: str) -> str | None:
    """The id of the oldest event ``channel``'s log still holds (None when it holds none)."""
    first = client.xrange(keys.log_key(channel), count=1)
    return _text(first[0][0]) if first else None


def _text(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value


def moved_on(client: redis.Redis, positions: dict[str, str]) -> set[str]:
    """The channels of ``positions`` (channel → the id last delivered) whose log holds an event
    after that id: what a reconnect must read back. One ``XREAD COUNT 1`` per partition (the
    channels of one partition share a hash slot, so one command may name them all), pipelined:
    one round trip, per shard under Cluster, however many channels.

    A log a failover left behind the position (its newest event older than the position) is not
    named: nothing in it is new. Its next event arrives live with a ``prev`` that is not the
    position, and the gap check reads it back then, announcing the loss (read_from)."""
    groups: dict[int, list[str]] = {}
    for name in positions:
        groups.setdefault(keys.partition(name), []).append(name)
    pipe = client.pipeline(transaction=False)
    for names in groups.values():
        pipe.xread({keys.log_key(name): positions[name] for name in names}, count=1)
    moved: set[str] = set()
    for names, reply in zip(groups.values(), pipe.execute(), strict=True):
        by_key = {keys.log_key(name): name for name in names}
        for key, _entries in _streams(reply):
            moved.add(by_key[_text(key)])
    return moved


def _streams(reply: object) -> list[tuple[bytes | str, list]]:
    """XREAD's reply as ``[(key, entries)]``: a list under RESP2, a dict under RESP3."""
    if not reply:
        return []
    if isinstance(reply, dict):
        return list(reply.items())
    return [(item[0], item[1]) for item in reply]  # type: ignore[union-attr]
