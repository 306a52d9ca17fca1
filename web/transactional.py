"""Publishing inside the app's Flask-SQLAlchemy transactions (``EventGate(app, db=db)``).

``gate.publish`` in a request or an app context queues the event on the current session; just
before that session's root transaction commits, the queue is written into the outbox
(shared/outbox.py) within the same transaction, and once it committed the worker's relay thread
is woken, so the event reaches Redis at once in the common case. A rollback — an exception, a
session closed without commit, the app context ending — leaves nothing. Queuing until the commit
(rather than writing at once) takes the per-channel writer locks for the shortest time, in
sorted order, so two transactions never deadlock on them.

Savepoints (``begin_nested``): an event queued inside one is dropped when that savepoint (or an
enclosing one) rolls back, and kept when it is released; every kept event is written at the
root commit, in the order of the ``publish`` calls. SQLAlchemy fires the commit events for a
savepoint's release too, so both hooks ignore a commit while a savepoint is still open: a root
transaction committed directly (``session.get_transaction().commit()``) while a savepoint is
open therefore writes nothing, and says so in the log — close savepoints first.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session, SessionTransaction

from eventgate.shared.outbox import Outbox
from eventgate.shared.publisher import Draft

log = logging.getLogger("eventgate.outbox")


class SessionOutbox:
    """Ties one Outbox to the sessions of one ``scoped_session`` (Flask-SQLAlchemy's
    ``db.session``): its session events are per sessionmaker, so other apps' sessions in the
    process are not touched."""

    def __init__(self, outbox: Outbox, sessions: Any) -> None:
        self.outbox = outbox
        self._sessions = sessions
        self._queued = f"eventgate.outbox.queued.{id(self)}"
        self._written = f"eventgate.outbox.written.{id(self)}"
        event.listen(sessions, "before_commit", self._before_commit)
        event.listen(sessions, "after_commit", self._after_commit)
        event.listen(sessions, "after_soft_rollback", self._after_soft_rollback)
        event.listen(sessions, "after_transaction_end", self._after_transaction_end)

    def add(self, drafts: list[Draft]) -> None:
        """Queue ``drafts`` on the current session, with the transaction they belong to (the
        innermost savepoint, or None for the root): written at the root commit."""
        session: Session = self._sessions()
        owner = session.get_nested_transaction()
        session.info.setdefault(self._queued, []).extend((owner, draft) for draft in drafts)

    def queued(self) -> int:
        """Events queued on the current session and not written yet."""
        return len(self._sessions().info.get(self._queued, ()))

    def _before_commit(self, session: Session) -> None:
        if session.in_nested_transaction():
            return  # a savepoint's release: its events stay queued for the root commit
        queued = session.info.pop(self._queued, None)
        if queued:
            self.outbox.publish_many(session, [draft for _, draft in queued])
            session.info[self._written] = True

    def _after_commit(self, session: Session) -> None:
        if session.in_nested_transaction():
            return  # a savepoint's release: nothing is committed yet
        if session.info.pop(self._written, False):
            self.outbox.wake()
        lost = session.info.pop(self._queued, None)
        if lost:
            log.error(
                "%d event(s) published in a transaction were not written to the outbox: the "
                "transaction was committed while a savepoint was still open. Close savepoints "
                "before committing.", len(lost),
            )

    def _after_soft_rollback(self, session: Session, previous: SessionTransaction) -> None:
        queued = session.info.get(self._queued)
        if not queued:
            return
        if not previous.nested:
            session.info.pop(self._queued, None)
            return
        session.info[self._queued] = [
            (owner, draft) for owner, draft in queued if not _within(owner, previous)
        ]

    def _after_transaction_end(self, session: Session, transaction: SessionTransaction) -> None:
        if transaction.parent is None:  # the root transaction ended: committed or rolled back
            session.info.pop(self._queued, None)
            session.info.pop(self._written, None)


def _within(owner: SessionTransaction | None, savepoint: SessionTransaction) -> bool:
    """Whether a transaction is ``savepoint`` or nested inside it."""
    while owner is not None:
        if owner is savepoint:
            return True
        owner = owner.parent
    return False
