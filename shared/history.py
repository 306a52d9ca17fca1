"""Reading a channel's retained log back on request: the history page both doors answer
(``GET /api/channels/<channel>/events`` on the web app, ``GET /streams/history`` on the stream
pool), and where a stream opened with ``rewind=N`` starts.

One module for both doors, so that a page means the same thing whichever door served it: the
same parameters refused with the same sentences, the same JSON, the same ``next``. A page's ids
are the log's own ids, so each is also a valid resume cursor (``Last-Event-ID``) for a
one-channel stream.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from urllib.parse import urlencode

import redis

from eventgate.shared.errors import InvalidRequest, RedisUnreachable
from eventgate.shared.events import (
    START,
    entry_fields,
    id_key,
    read_heads,
    read_newest,
    read_page,
)
from eventgate.shared.names import validate_channel

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
MAX_REWIND = 100
#: Each part of a Redis Stream id is an unsigned 64-bit number.
_ID_PART_MAX = 2**64 - 1


def parse_limit(text: str | None) -> int:
    """A page's ``limit`` (``DEFAULT_LIMIT`` when absent); InvalidRequest unless 1–1000."""
    if text is None:
        return DEFAULT_LIMIT
    return _bounded(text, "limit", 1, MAX_LIMIT)


def parse_after(text: str | None) -> str:
    """A page's ``after``: an event id (``1795420498714-0``), or the log's start when absent."""
    if text is None:
        return START
    try:
        ms, seq = id_key(text)
        # Redis refuses ids beyond 64 bits, and an exclusive range after the greatest id.
        if ms > _ID_PART_MAX or seq > _ID_PART_MAX or ms == seq == _ID_PART_MAX:
            raise ValueError(text)
    except ValueError:
        raise InvalidRequest(
            "after must be an event id such as 1795420498714-0 (the id of an event or the "
            "next of a page)."
        ) from None
    return text


def parse_rewind(text: str | None) -> int:
    """A stream's ``rewind`` (0 when absent); InvalidRequest unless 1–100."""
    return 0 if text is None else _bounded(text, "rewind", 1, MAX_REWIND)


def _bounded(text: str, name: str, low: int, high: int) -> int:
    value = int(text) if text.isascii() and text.isdigit() and len(text) <= 6 else None
    if value is None or not low <= value <= high:
        raise InvalidRequest(f"{name} must be a whole number from {low} to {high}.")
    return value


def read_history(
    client: redis.Redis, channel: object, after: str | None, limit: str | None
) -> dict:
    """The page of ``channel``'s log after ``after`` (the raw query values, validated here):
    ``{"events": [{"id", "type", "data", "time"}], "next": id or None}``, oldest first;
    ``next`` is the page's last id when the log holds more after it.

    Raises InvalidName / InvalidRequest (400) for bad parameters and RedisUnreachable (503)
    when Redis does not answer."""
    name = validate_channel(channel)
    start = parse_after(after)
    count = parse_limit(limit)
    try:
        # One more than the page: whether more follow, without a second round trip.
        entries = read_page(client, name, start, count + 1)
    except (redis.RedisError, OSError) as error:
        raise RedisUnreachable.answering(error, "the history cannot be read; retry.") from None
    events = [_event_json(entry_id, fields) for entry_id, fields in entries[:count]]
    more = len(entries) > count
    return {"events": events, "next": events[-1]["id"] if more else None}


def _event_json(entry_id: bytes | str, fields: dict) -> dict:
    event_id, _prev, event_type, data = entry_fields(entry_id, fields)
    return {
        "id": event_id,
        "type": _text(event_type),
        "data": json.loads(data),
        "time": id_time(event_id),
    }


def id_time(event_id: str) -> str:
    """When the event was stored, from its id's milliseconds: ISO 8601 UTC with milliseconds
    (``2026-11-23T07:57:44.123Z``); several events share a second, rarely a millisecond."""
    moment = datetime.fromtimestamp(id_key(event_id)[0] / 1000, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def next_link(path: str, query: Mapping[str, list[str]], page: dict) -> dict[str, str]:
    """The ``Link`` header of the page following ``page`` (none after the last page): this
    request's ``path`` and query with ``after`` set to the page's ``next``."""
    if page["next"] is None:
        return {}
    pairs = [(name, value) for name, values in query.items() if name != "after" for value in values]
    pairs.append(("after", page["next"]))
    return {"Link": f'<{path}?{urlencode(pairs)}>; rel="next"'}


def rewind_positions(client: redis.Redis, channels: list[str], count: int) -> dict[str, str]:
    """Where a stream that asked for the last ``count`` retained events of each channel starts:
    the id before the ``count``-th newest (``XREVRANGE COUNT count+1``, pipelined: one round
    trip). A log holding ``count`` events or fewer starts before its oldest (that event's
    ``prev``, so a log trimmed of older events replays without a loss notice); an empty log at
    its end, as a stream without rewind would (``read_heads``)."""
    positions: dict[str, str] = {}
    empty = []
    for name, newest in zip(channels, read_newest(client, channels, count + 1), strict=True):
        if len(newest) > count:
            positions[name] = _text(newest[count][0])
        elif newest:
            positions[name] = entry_fields(*newest[-1])[1]
        else:
            empty.append(name)
    if empty:
        positions.update(read_heads(client, empty))
    return {name: positions[name] for name in channels}


def _text(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value
