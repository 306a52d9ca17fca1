"""Publishing inside the app's Flask-SQLAlchemy transactions (``EventGate(app, db=db)``).

``gate.publish`` in a request or an app context queues the event on the current session; just
before that session commits, the queue is written into the outbox (shared/outbox.py) within the
same transaction, and once it committed the worker's relay thread is woken, so the event reaches
Redis at once in the common case. A rollback — an exception, a session closed without commit,
the app context ending — leaves nothing. Queuing until the commit (rather than writing at once)
takes the per-channel writer locks for the shortest time, in sorted order; inside a SAVEPOINT
(``begin_nested``) the event is written at once, so that the savepoint's rollback removes it.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session, SessionTransaction

from eventgate.shared.outbox import Outbox
from eventgate.shared.publisher import Draft


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
        event.listen(sessions, "after_transaction_end", self._after_transaction_end)

    def add(self, drafts: list[Draft]) -> None:
        """Queue ``drafts`` on the current session (written at its commit)."""
        session: Session = self._sessions()
        if session.in_nested_transaction():
            self.outbox.publish_many(session, drafts)
            session.info[self._written] = True
            return
        session.info.setdefault(self._queued, []).extend(drafts)

    def queued(self) -> int:
        """Events queued on the current session and not written yet."""
        return len(self._sessions().info.get(self._queued, ()))

    def _before_commit(self, session: Session) -> None:
        drafts = session.info.pop(self._queued, None)
        if drafts:
            self.outbox.publish_many(session, drafts)
            session.info[self._written] = True

    def _after_commit(self, session: Session) -> None:
        # A savepoint's release fires the commit events too; its rows are not committed yet:
        # wake the relay at the outer commit, or it looks now, finds nothing, and sleeps.
        if session.in_nested_transaction():
            return
        if session.info.pop(self._written, False):
            self.outbox.wake()

    def _after_transaction_end(self, session: Session, transaction: SessionTransaction) -> None:
        if transaction.parent is None:  # the root transaction ended: committed or rolled back
            session.info.pop(self._queued, None)
            session.info.pop(self._written, None)
