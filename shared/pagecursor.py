"""The cursor a page rendered from the database hands its EventSource (as ``lastEventId``), so
that the stream starts exactly after what the page shows: nothing published in between is
missed.

The positions, per channel, are the greatest of three readings, taken in this order:
1. the log's newest id in Redis (``read_heads``), read *before* the database;
2. with an outbox, in one statement (one snapshot) of the page's own transaction: the event id
   of the channel's last relayed row, and the rows committed but not relayed yet;
3. those waiting rows, published now (each under its own idempotency key, so a relay doing the
   same at the same time stores each once) to learn their ids.

Why it works: an event in Redis before (1) comes from a transaction committed before the
snapshot (the page shows it) or from a plain publish; a row committed before the snapshot is
either marked by then (2) or waiting and published in (3); a row committed after the snapshot is
stored after every earlier row of its channel (relay order), so after the cursor, and is
delivered. Under PostgreSQL's REPEATABLE READ (or SQLite, inside one transaction) the page's own
reads share that snapshot and the page and the stream agree exactly. Under READ COMMITTED (the
default) a page read later than the cursor may also show a change committed in between, whose
event the stream then delivers too: nothing is missed; make updates idempotent (a version).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import redis

from eventgate.shared import cursor
from eventgate.shared.errors import InvalidRequest, RedisUnreachable
from eventgate.shared.events import id_key, read_heads
from eventgate.shared.names import validate_channel

if TYPE_CHECKING:
    from sqlalchemy import Connection
    from sqlalchemy.orm import Session

    from eventgate.shared.outbox import Outbox


def page_cursor(
    client: redis.Redis,
    channels: Iterable[str],
    *,
    outbox: Outbox | None = None,
    within: Connection | Session | None = None,
) -> str:
    """The resume cursor at ``channels``' current positions (see the module docstring); with
    ``outbox`` and ``within`` (the page's Connection or Session) taken in its snapshot.

    Raises InvalidName for a bad channel, InvalidRequest for none, RedisUnreachable (503) when
    Redis does not answer, and PublishError when waiting rows cannot be published.
    """
    names = list(dict.fromkeys(validate_channel(name) for name in channels))
    if not names:
        raise InvalidRequest("a cursor needs at least one channel.")
    try:
        positions = read_heads(client, names)
    except (redis.RedisError, OSError) as error:
        raise RedisUnreachable.answering(
            error,
            "the stream's start cannot be taken; render the page without live updates or retry.",
        ) from None
    if outbox is not None and within is not None:
        for name, event_id in outbox.committed_positions(within, names).items():
            if id_key(event_id) > id_key(positions[name]):
                positions[name] = event_id
    return cursor.format({name: positions[name] for name in names}, names[0])
