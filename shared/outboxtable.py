"""The outbox table and what touches it in SQL: the writer's insert (with its per-channel locks),
the depth, and the rows a page cursor reads. The relay's claim is in shared/relay.py; why there is
an outbox at all is in shared/outbox.py.

Order per channel is the commit order. PostgreSQL assigns ids at insert time, not at commit, so
a writer takes a transaction-scoped advisory lock per channel (``pg_advisory_xact_lock``, in
sorted order, so two writers never deadlock on them) before its insert: transactions that write
the same channel then commit in id order. SQLite has one writer at a time, so ids are already in
commit order. This is what lets a relay take a channel's oldest waiting row as its head: no row
of that channel with a smaller id can commit later.

Rows are marked, not deleted, when Redis confirmed them (``event_id`` holds the id Redis gave),
and deleted ``KEEP_SECONDS`` later: ``cursor_rows`` reads the marks so that a page rendered from
the database starts its stream exactly after what it shows (shared/pagecursor.py).

Importing this module needs SQLAlchemy (``pip install "eventgate[outbox]"``).
"""

from __future__ import annotations

import time
import uuid
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Engine,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    func,
    insert,
    select,
    text,
)
from sqlalchemy.orm import Session

from eventgate.shared.errors import ConfigError
from eventgate.shared.publisher import Draft

TABLE_NAME = "eventgate_outbox"
#: The NOTIFY channel a PostgreSQL relay LISTENs on; one notification per committing transaction.
NOTIFY_CHANNEL = "eventgate_outbox"
#: First key of the two-key advisory locks writers take per channel (``"eg"`` in ASCII), so they
#: never collide with an app's own one-key advisory locks.
WRITER_LOCK_SPACE = 0x6567
#: Relayed rows stay marked this long before they are deleted (seconds).
KEEP_SECONDS = 60.0
SUPPORTED_DIALECTS = ("postgresql", "sqlite")


def outbox_table(metadata: MetaData | None = None, name: str = TABLE_NAME) -> Table:
    """The outbox table, in ``metadata`` (your own, for Alembic autogenerate) or a fresh one.

    ``key`` is the idempotency key of the row's publish (random, so rows of two databases or a
    recreated table never collide within Redis's memory of keys); ``event_id`` is NULL while the
    row waits and the event's id once Redis stored it.
    """
    table = Table(
        name,
        metadata if metadata is not None else MetaData(),
        # INTEGER PRIMARY KEY is SQLite's rowid; BIGINT would not autoincrement there.
        Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
        Column("key", String(32), nullable=False),
        Column("channel", String(128), nullable=False),
        Column("type", String(64), nullable=False),
        Column("data", Text, nullable=False),
        Column("created", Float, nullable=False),
        Column("event_id", String(41)),
        Column("relayed", Float),
    )
    # The relay's scans: pending rows in id order, and a channel's rows in id order.
    Index(f"{name}_pending", table.c.id, postgresql_where=table.c.event_id.is_(None),
          sqlite_where=table.c.event_id.is_(None))
    Index(f"{name}_channel", table.c.channel, table.c.id)
    return table


@dataclass(frozen=True)
class Pending:
    """A row waiting to be relayed (or being relayed)."""

    id: int
    key: str
    draft: Draft

    @property
    def idempotency_key(self) -> str:
        return f"outbox.{self.key}"


@dataclass(frozen=True)
class Depth:
    """How far behind the relay is: rows waiting and the age of the oldest (seconds, 0 if none)."""

    rows: int
    oldest_seconds: float


def dialect_of(bind: Engine | Connection) -> str:
    """The bind's dialect name, refusing one the outbox does not support (ConfigError)."""
    name = bind.dialect.name
    if name not in SUPPORTED_DIALECTS:
        raise ConfigError(
            f"the outbox supports PostgreSQL and SQLite; this database is {name}. Publish "
            "without the outbox (after the request), or keep the outbox in a PostgreSQL or "
            "SQLite database."
        )
    return name


def connection_of(target: Connection | Session) -> Connection:
    """The Connection of a Session's current transaction (begun if needed), or ``target``."""
    return target.connection() if isinstance(target, Session) else target


def channel_lock_key(channel: str) -> int:
    """The advisory lock's second key for ``channel``: crc32 as a signed 32-bit integer."""
    value = zlib.crc32(channel.encode("utf-8"))
    return value - (1 << 32) if value >= 1 << 31 else value


def write(connection: Connection, table: Table, drafts: Sequence[Draft]) -> None:
    """Insert ``drafts`` into the outbox within ``connection``'s current transaction.

    On PostgreSQL first the per-channel writer locks (sorted: no deadlock between two writers
    of the same channels) and one NOTIFY, which PostgreSQL delivers only if the transaction
    commits. Raises what the database raises; nothing is published here.
    """
    if not drafts:
        return
    if dialect_of(connection) == "postgresql":
        # One round trip for the NOTIFY and the first lock (a transaction rarely publishes on
        # more than one channel); the expressions of a select list run in their order.
        locks = sorted({channel_lock_key(draft.channel) for draft in drafts})
        connection.execute(
            text("SELECT pg_notify(:notify, ''), pg_advisory_xact_lock(:space, :lock)"),
            {"notify": NOTIFY_CHANNEL, "space": WRITER_LOCK_SPACE, "lock": locks[0]},
        )
        for lock in locks[1:]:
            connection.execute(
                text("SELECT pg_advisory_xact_lock(:space, :lock)"),
                {"space": WRITER_LOCK_SPACE, "lock": lock},
            )
    now = time.time()
    connection.execute(
        insert(table),
        [
            {
                "key": uuid.uuid4().hex,
                "channel": draft.channel,
                "type": draft.type,
                "data": draft.data,
                "created": now,
            }
            for draft in drafts
        ],
    )


def rows_to_pending(rows: Iterable) -> list[Pending]:
    """Pending rows from ``SELECT id, key, channel, type, data`` results."""
    return [
        Pending(row.id, row.key, Draft(channel=row.channel, type=row.type, data=row.data))
        for row in rows
    ]


def pending_columns(table: Table) -> tuple:
    return (table.c.id, table.c.key, table.c.channel, table.c.type, table.c.data)


def depth(connection: Connection, table: Table) -> Depth:
    """Rows waiting and the oldest one's age."""
    count, oldest = connection.execute(
        select(func.count(), func.min(table.c.created)).where(table.c.event_id.is_(None))
    ).one()
    return Depth(int(count), max(0.0, time.time() - oldest) if oldest is not None else 0.0)


def cursor_rows(
    connection: Connection, table: Table, channels: Sequence[str]
) -> tuple[dict[str, str], list[Pending]]:
    """For ``channels``, in one statement (one snapshot): the event id of each channel's last
    relayed row still kept, and the rows still waiting, in id order."""
    last = table.alias("last")
    relayed_max = (
        select(func.max(last.c.id))
        .where(last.c.channel == table.c.channel, last.c.event_id.is_not(None))
        .scalar_subquery()
    )
    rows = connection.execute(
        select(*pending_columns(table), table.c.event_id)
        .where(
            table.c.channel.in_(list(channels)),
            table.c.event_id.is_(None) | (table.c.id == relayed_max),
        )
        .order_by(table.c.id)
    ).all()
    relayed = {row.channel: row.event_id for row in rows if row.event_id is not None}
    waiting = rows_to_pending(row for row in rows if row.event_id is None)
    return relayed, waiting
