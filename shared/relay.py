"""The relay: publishes committed outbox rows to Redis, in commit order per channel, each once.

A round claims waiting rows and publishes them in id order, each row under its own idempotency
key (``outbox.<key>``), in one script run per partition of the batch (``Publisher.store_rows``:
one round trip, a channel's rows all or none, so a later row never overtakes an earlier one),
then marks the rows Redis confirmed. A failure ends the round; its rows wait for the next.

Several relays may run at once: the worker threads of every web worker, woken after their own
commits, and ``eventgate relay``, which sweeps what workers left behind. Why that is safe:
- On PostgreSQL a round locks the *head* of each channel (its oldest waiting row) with
  ``FOR UPDATE SKIP LOCKED``, and only then that channel's later rows. A relay that finds a head
  locked skips the whole channel, so two relays never work one channel at once and the work
  spreads over channels.
- On SQLite (one writer at a time; no row locks) relays do not exclude each other. Order and
  once-only still hold: each relay publishes a channel's rows in id order and stops at a
  failure, so when any relay stores row k, every earlier row of that channel is already stored,
  and a row two relays publish is stored by one and replayed (not stored again) by the other.

Rows committed with ids in commit order per channel (shared/outboxtable.py) make the head the
true next event: no row of a channel with a smaller id can still commit.

The one gap in "never twice": the idempotency record lives ``idempotency_seconds`` (a day by
default). A row published, then left unmarked for longer than that (its relay died and no relay
ran for a day), is published again.
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import (
    Engine,
    Table,
    bindparam,
    delete,
    func,
    select,
    text,
    update,
)
from sqlalchemy.exc import SQLAlchemyError

from eventgate.shared.errors import EventgateError
from eventgate.shared.outboxtable import (
    KEEP_SECONDS,
    NOTIFY_CHANNEL,
    Depth,
    Pending,
    dialect_of,
    pending_columns,
    rows_to_pending,
)
from eventgate.shared.outboxtable import depth as read_depth
from eventgate.shared.publisher import Publisher

log = logging.getLogger("eventgate.relay")

#: Rows one round claims at most.
BATCH_ROWS = 500


@dataclass(frozen=True)
class Round:
    """What one round did: rows published (or replayed) and marked, publishes that failed (a
    round stops at the first), and whether more rows may be waiting now (the claim was full)."""

    relayed: int
    failed: int
    more: bool


class Relay:
    """One outbox table's relay to one Publisher. Thread-safe: rounds run one at a time per
    instance; counters (``relayed``, ``failed``) only grow, for metrics."""

    def __init__(
        self,
        engine: Engine,
        publisher: Publisher,
        table: Table,
        *,
        batch_rows: int = BATCH_ROWS,
        keep_seconds: float = KEEP_SECONDS,
    ) -> None:
        self.engine = engine
        self.publisher = publisher
        self.table = table
        self.dialect = dialect_of(engine)
        self.batch_rows = batch_rows
        self.keep_seconds = keep_seconds
        self.relayed = 0
        self.failed = 0
        self.last_error: str | None = None
        self._lock = threading.Lock()

    def round(self) -> Round:
        """Claim, publish and mark one batch. Raises SQLAlchemyError when the database fails
        (nothing is marked then; the rows are published again as replays next time)."""
        with self._lock:
            with self.engine.connect() as connection:
                if self.dialect == "postgresql":
                    with connection.begin():
                        # A mark lost in a database crash only makes the next round publish
                        # the rows again, as replays: no need to wait for the disk.
                        connection.execute(text("SET LOCAL synchronous_commit TO OFF"))
                        rows = self._claim_locked(connection)
                        outcome = self._publish(rows)
                        self._mark(connection, outcome[0])
                else:
                    with connection.begin():
                        rows = self._claim_unlocked(connection)
                    outcome = self._publish(rows)
                    if outcome[0]:
                        with connection.begin():
                            self._mark(connection, outcome[0])
            confirmed, failed = outcome
            self.relayed += len(confirmed)
            self.failed += failed
            return Round(len(confirmed), failed, more=len(rows) >= self.batch_rows and not failed)

    def depth(self) -> Depth:
        """Rows waiting and the oldest one's age."""
        with self.engine.connect() as connection:
            return read_depth(connection, self.table)

    def purge(self) -> int:
        """Delete rows relayed more than ``keep_seconds`` ago; returns how many."""
        table = self.table
        with self.engine.begin() as connection:
            result = connection.execute(
                delete(table).where(
                    table.c.event_id.is_not(None),
                    table.c.relayed < time.time() - self.keep_seconds,
                )
            )
            return result.rowcount or 0

    # -- the claim ------------------------------------------------------------------------------

    def _claim_locked(self, connection) -> list[Pending]:  # type: ignore[no-untyped-def]
        """PostgreSQL: lock each channel's head row (skipping heads another relay holds), then
        the claimed channels' later rows, oldest first."""
        table = self.table
        waiting = table.c.event_id.is_(None)
        heads_ids = select(func.min(table.c.id)).where(waiting).group_by(table.c.channel)
        heads = connection.execute(
            select(table.c.channel)
            .where(waiting, table.c.id.in_(heads_ids))
            .order_by(table.c.id)
            .limit(self.batch_rows)
            .with_for_update(skip_locked=True)
        ).scalars().all()
        if not heads:
            return []
        return rows_to_pending(connection.execute(
            select(*pending_columns(table))
            .where(waiting, table.c.channel.in_(heads))
            .order_by(table.c.id)
            .limit(self.batch_rows)
            .with_for_update()
        ))

    def _claim_unlocked(self, connection) -> list[Pending]:  # type: ignore[no-untyped-def]
        table = self.table
        return rows_to_pending(connection.execute(
            select(*pending_columns(table))
            .where(table.c.event_id.is_(None))
            .order_by(table.c.id)
            .limit(self.batch_rows)
        ))

    # -- publishing and marking -----------------------------------------------------------------

    def _publish(self, rows: list[Pending]) -> tuple[list[tuple[int, str]], int]:
        """Publish ``rows`` in chunks of at most ``max_batch_events`` (one script run each:
        a channel's rows of a chunk are stored all or none). A failure ends the round; the
        chunks confirmed before it are marked, the rest wait (a partly stored chunk under
        Cluster is answered from its records next time)."""
        confirmed: list[tuple[int, str]] = []
        size = max(1, self.publisher.max_batch_events)
        for start in range(0, len(rows), size):
            chunk = rows[start:start + size]
            try:
                ids = self.publisher.store_rows(
                    [(row.draft, row.idempotency_key) for row in chunk]
                )
            except EventgateError as error:
                self.last_error = error.message
                log.debug("outbox relay: %s (%d row(s) wait)", error.message,
                          len(rows) - len(confirmed))
                return confirmed, 1
            confirmed += [(row.id, event_id) for row, event_id in zip(chunk, ids, strict=True)]
        self.last_error = None
        return confirmed, 0

    def _mark(self, connection, confirmed: list[tuple[int, str]]) -> None:  # type: ignore[no-untyped-def]
        if not confirmed:
            return
        table = self.table
        connection.execute(
            update(table)
            .where(table.c.id == bindparam("row_id"))
            .values(event_id=bindparam("eid"), relayed=time.time()),
            [{"row_id": row_id, "eid": event_id} for row_id, event_id in confirmed],
        )


class Listener:
    """PostgreSQL: a connection LISTENing on the outbox's NOTIFY channel (psycopg 3), so that a
    relay wakes as soon as any writer commits. Reconnects on the next wait after a failure."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._connection = None

    def wait(self, timeout: float) -> bool:
        """Block until a notification arrives (True) or ``timeout`` passes (False)."""
        try:
            connection = self._connect()
            woken = any(True for _ in connection.notifies(timeout=timeout, stop_after=1))
            if woken:  # drain what else came: one round serves every commit so far
                for _ in connection.notifies(timeout=0.0):
                    pass
            return woken
        except Exception as error:  # noqa: BLE001 - any driver failure: reconnect next time
            log.warning("outbox relay: LISTEN failed (%s); sweeping on a timer", error)
            self.close()
            time.sleep(min(timeout, 1.0))
            return False

    def _connect(self):  # type: ignore[no-untyped-def]
        if self._connection is None:
            import psycopg  # the postgres extra; only a PostgreSQL relay with LISTEN needs it

            url = self._engine.url.set(drivername="postgresql")
            self._connection = psycopg.connect(
                url.render_as_string(hide_password=False), autocommit=True
            )
            self._connection.execute(f"LISTEN {NOTIFY_CHANNEL}")
        return self._connection

    def close(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(Exception):  # closing a broken connection
                self._connection.close()
            self._connection = None


class RelayLoop:
    """Runs a Relay until ``stop``: a round after every ``wake()``, on every NOTIFY (with a
    Listener), and every ``sweep_seconds`` regardless; while Redis or the database fails, rounds
    back off (jittered, up to ``max_backoff_seconds``) and wake-ups wait for the back-off."""

    def __init__(
        self,
        relay: Relay,
        *,
        listener: Listener | None = None,
        sweep_seconds: float = 5.0,
        max_backoff_seconds: float = 5.0,
        on_round: Callable[[Round], None] | None = None,
    ) -> None:
        self.relay = relay
        self.listener = listener
        self.sweep_seconds = sweep_seconds
        self.max_backoff_seconds = max_backoff_seconds
        self.on_round = on_round
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._purged_at = 0.0

    def wake(self) -> None:
        """Ask for a round now (after a commit that wrote outbox rows)."""
        self._wake.set()

    def start(self) -> None:
        """Run in a daemon thread of this process (idempotent; after a fork, call again)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self.run, name="eventgate-relay", daemon=True)
        self._thread.start()

    def request_stop(self) -> None:
        """Make ``run`` return after its current round, without waiting for it (what a signal
        handler may do; ``stop`` also joins the thread and closes the listener)."""
        self._stop.set()
        self._wake.set()

    def stop(self, timeout: float | None = 5.0) -> None:
        self.request_stop()
        if self._thread is not None:
            self._thread.join(timeout)
        if self.listener is not None:
            self.listener.close()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def run(self) -> None:
        """The loop itself (``eventgate relay`` runs it in its main thread). Logs one line when
        rounds start failing and one when they succeed again, not one per failed round."""
        failures = 0
        while not self._stop.is_set():
            self._wake.clear()
            try:
                outcome = self.relay.round()
                self._purge_now_and_then()
            except SQLAlchemyError as error:
                self.relay.last_error = f"the database failed: {type(error).__name__}"
                self.relay.failed += 1  # a failed round, as a failed publish is
                outcome = Round(0, 1, more=False)
            except Exception as error:  # noqa: BLE001 - a relay thread must outlive any bug
                self.relay.last_error = f"unexpected {type(error).__name__}: {error}"
                self.relay.failed += 1
                log.exception("outbox relay: round failed")
                outcome = Round(0, 1, more=False)
            if self.on_round is not None:
                self.on_round(outcome)
            if outcome.failed:
                if not failures:
                    log.warning("outbox relay: retrying until a round succeeds: %s",
                                self.relay.last_error)
                failures += 1
                backoff = min(self.max_backoff_seconds, 0.1 * 2 ** min(failures, 10))
                self._stop.wait(backoff * random.uniform(0.5, 1.0))
                continue
            if failures:
                log.info("outbox relay: relaying again after %d failed round(s)", failures)
            failures = 0
            if outcome.more:
                continue
            self._idle()

    def _idle(self) -> None:
        if self.listener is None:
            self._wake.wait(self.sweep_seconds)
            return
        deadline = time.monotonic() + self.sweep_seconds
        while not self._stop.is_set() and not self._wake.is_set():
            left = deadline - time.monotonic()
            if left <= 0 or self.listener.wait(min(left, 0.5)):
                return

    def _purge_now_and_then(self) -> None:
        now = time.monotonic()
        if now - self._purged_at >= self.relay.keep_seconds / 4:
            self._purged_at = now
            self.relay.purge()
