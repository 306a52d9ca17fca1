"""Outbox: publish exactly once per committed database transaction.

Publishing straight to Redis after a commit loses the event when Redis is down at that moment
(the data is committed, the announcement is not); publishing before the commit announces a
change that may still roll back. So ``Outbox.publish`` writes the event as a row of the app's own
database, in the transaction that makes the change (shared/outboxtable.py), and a relay
publishes it to Redis once that transaction committed (shared/relay.py): with the row's key as
the idempotency key, so a relay that dies between publishing and marking the row never
publishes it twice, and in commit order per channel. While Redis is down rows wait; the app's
requests never notice.

For a job worker::

    outbox = Outbox(engine, Publisher.from_url("redis://…"))
    with engine.begin() as connection:           # or a Session
        connection.execute(update(orders)…)
        outbox.publish(connection, "orders.42", {"status": "paid"}, "order.updated")
    outbox.relay()    # or leave it to `eventgate relay` (woken by NOTIFY on PostgreSQL)

The Flask extension does this by itself with Flask-SQLAlchemy (``EventGate(app, db=db)``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from sqlalchemy import Connection, Engine, MetaData, Table
from sqlalchemy.orm import Session

from eventgate.shared.outboxtable import (
    KEEP_SECONDS,
    TABLE_NAME,
    Depth,
    connection_of,
    cursor_rows,
    dialect_of,
    outbox_table,
    write,
)
from eventgate.shared.publisher import Draft, Publisher
from eventgate.shared.relay import Listener, Relay, RelayLoop


class Outbox:
    """One outbox table in one database, relayed through one Publisher. Safe to share within a
    process; ``start()`` runs a relay thread in it (again after a fork: the thread is per
    process)."""

    def __init__(
        self,
        engine: Engine,
        publisher: Publisher,
        *,
        table: Table | None = None,
        keep_seconds: float = KEEP_SECONDS,
    ) -> None:
        dialect_of(engine)  # refuses an unsupported database now, not at the first publish
        self.engine = engine
        self.publisher = publisher
        self.table = table if table is not None else outbox_table(MetaData(), TABLE_NAME)
        self.relay_ = Relay(engine, publisher, self.table, keep_seconds=keep_seconds)
        self._loop: RelayLoop | None = None
        self._pid = 0

    def create_tables(self) -> None:
        """Create the outbox table and its indexes if missing (Alembic users: put
        ``outbox_table(your_metadata)`` in your metadata instead)."""
        self.table.create(self.engine, checkfirst=True)

    # -- writing, inside the caller's transaction -----------------------------------------------

    def publish(
        self,
        within: Connection | Session,
        channel: str,
        data: object = None,
        event_type: str = "message",
    ) -> None:
        """Write one event into the outbox in ``within``'s transaction; it is published once
        that transaction commits, and never if it rolls back. Raises InvalidName/InvalidEvent
        for bad input (nothing written)."""
        self.publish_many(within, [self.publisher.draft(channel, data, event_type)])

    def publish_many(self, within: Connection | Session, drafts: Sequence[Draft]) -> None:
        """``publish`` for several drafts (``Publisher.draft``), in order."""
        write(connection_of(within), self.table, list(drafts))

    # -- relaying -------------------------------------------------------------------------------

    def relay(self) -> int:
        """Relay what waits now, in this thread, until nothing is left or a publish fails;
        returns the rows relayed. Raises SQLAlchemyError when the database fails."""
        total = 0
        while True:
            outcome = self.relay_.round()
            total += outcome.relayed
            if not outcome.more:
                return total

    def loop(self, *, listen: bool = False, sweep_seconds: float = 5.0) -> RelayLoop:
        """A RelayLoop over this outbox (``listen``: woken by PostgreSQL's NOTIFY too)."""
        listener = Listener(self.engine) if listen and self.relay_.dialect == "postgresql" else None
        return RelayLoop(self.relay_, listener=listener, sweep_seconds=sweep_seconds)

    def start(self) -> None:
        """Run a relay thread in this process, woken by ``wake()``; idempotent, fork-aware."""
        if self._loop is None or self._pid != os.getpid():
            self._loop = self.loop(sweep_seconds=10.0)
            self._pid = os.getpid()
        self._loop.start()

    def wake(self) -> None:
        """A transaction that wrote rows committed: relay them now (starts the thread)."""
        self.start()
        assert self._loop is not None
        self._loop.wake()

    def stop(self) -> None:
        if self._loop is not None and self._pid == os.getpid():
            self._loop.stop()

    def depth(self) -> Depth:
        """Rows waiting and the oldest one's age (metrics, ``eventgate status``)."""
        return self.relay_.depth()

    # -- the page cursor ------------------------------------------------------------------------

    def committed_positions(
        self, within: Connection | Session, channels: Sequence[str]
    ) -> dict[str, str]:
        """For ``channels``, as ``within``'s snapshot sees the outbox: the event id of the last
        row of each channel committed so far (a waiting row is published now to learn it; see
        shared/pagecursor.py). Channels without such a row are left out."""
        relayed, waiting = cursor_rows(connection_of(within), self.table, channels)
        positions = dict(relayed)
        size = max(1, self.publisher.max_batch_events)
        for start in range(0, len(waiting), size):
            chunk = waiting[start:start + size]
            ids = self.publisher.store_rows([(row.draft, row.idempotency_key) for row in chunk])
            for row, event_id in zip(chunk, ids, strict=True):
                positions[row.draft.channel] = event_id
        return positions
