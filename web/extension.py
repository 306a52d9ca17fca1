"""EventGate: the Flask extension that publishes events and mints stream tokens for an app.

This is what a Flask app embeds to feed eventgate::

    gate = EventGate(app)                       # or EventGate(); gate.init_app(app) in a factory
    gate.publish("orders.42", {"state": "paid"}, "order.updated")   # in a view: after-commit
    token, expires_at = gate.token_for(["orders.42"], subject="user-7")   # for its EventSource
    gate.revoke("user-7")                       # ends user-7's streams, refuses its old tokens

Two ways to publish, chosen by how the extension is set up:

- ``EventGate(app, db=db)`` with Flask-SQLAlchemy: the *transactional outbox*. ``publish`` in a
  request or an app context writes the event into the app's database, in the session's
  transaction (web/transactional.py), and the worker's relay thread publishes it to Redis right
  after the commit, exactly once, in commit order per channel (shared/outbox.py). A rollback
  leaves nothing; Redis being down delays events, never fails a request.
- Without ``db``: *after-request*. ``publish`` validates at once (bad input raises where the
  mistake is) but sends nothing until the request has succeeded, so a view that fails halfway
  never announces a change it did not make. The queued events go out in one atomic batch before
  the response leaves; if Redis does not store them the response becomes a 503 — a client is
  never told "done" about an event nobody will receive. What it does not guarantee: the app's
  database may have committed by then, so a 503 here means the change happened and its event is
  lost (the client is told, with the 503); a worker killed between the commit and the publish
  loses it silently. Use the outbox where that matters.

``gate.cursor(channels)`` gives a page rendered from the database the cursor its EventSource
starts from, so nothing published between the render and the stream's open is missed
(shared/pagecursor.py).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, TypeVar

import redis
from flask import Flask, Response, current_app, has_app_context, has_request_context, request

from eventgate.cli import command_group
from eventgate.shared import revocations
from eventgate.shared.config import Config
from eventgate.shared.errors import InvalidEvent, PublishError
from eventgate.shared.pagecursor import page_cursor
from eventgate.shared.publisher import Draft, Publisher
from eventgate.shared.tokens import ChannelTokens, IssuedToken
from eventgate.web.errors import publish_failed_response

_T = TypeVar("_T")

EXTENSION_KEY = "eventgate"
# Per-request state lives in the WSGI environ: it dies with the request even when tests or
# workers reuse one app context (and its ``g``) across requests.
_PENDING = "eventgate.pending"
_SETTLED = "eventgate.settled"


class EventGate:
    """Publishes events and issues stream tokens for one Flask app.

    Holds a pooled Redis client (``shared.redisconn.connect``: short timeouts, so an outage fails
    a request in about a second instead of stalling a worker), a ``Publisher`` and the
    ``ChannelTokens`` of ``config`` (default: ``Config.from_env()`` when ``init_app`` runs).
    One instance serves one app; a factory that builds several apps builds one EventGate each.
    """

    def __init__(
        self, app: Flask | None = None, config: Config | None = None, *, db: Any = None
    ) -> None:
        self._config = config
        self._db = db
        self._session_outbox: Any = None
        self._app: Flask | None = None
        self._client: redis.Redis | None = None
        self._publisher: Publisher | None = None
        self._tokens: ChannelTokens | None = None
        #: Receives ``observe(outcome, events, seconds)`` for every publish when set (web.metrics
        #: sets it; an app of yours may set any object with that method).
        self.metrics = None
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask, *, db: Any = None) -> None:
        """Bind to ``app``: register in ``app.extensions["eventgate"]`` and install the hook that
        publishes queued events. Opens no connection (the pool connects on first use).

        ``db`` (a Flask-SQLAlchemy ``SQLAlchemy``, already initialised on ``app``; or given to
        the constructor) turns on the transactional outbox: its table lives in ``db``'s default
        database (create it with ``gate.outbox.create_tables()``, or from ``outbox_table`` in
        your migrations). Needs ``pip install "eventgate[outbox]"``.

        The hook is an ``after_request`` function; Flask runs those in reverse order of
        registration, so call ``init_app`` before registering other ``after_request`` functions
        that may still turn a response into an error.
        """
        if self._app is app:
            return
        if self._app is not None:
            raise RuntimeError("an EventGate serves one app: create one EventGate per app.")
        config = self._config if self._config is not None else Config.from_env()
        self._config = config
        self._publisher = Publisher.from_config(config)
        self._client = self._publisher.client
        self._tokens = ChannelTokens.from_config(config)
        if db is not None:
            self._db = db
        if self._db is not None:
            self._session_outbox = _session_outbox(app, self._db, self._publisher)
        self._app = app
        app.extensions[EXTENSION_KEY] = self
        app.after_request(self._publish_pending)
        app.cli.add_command(command_group(lambda: config))  # `flask eventgate …`, this config

    # -- publishing -------------------------------------------------------------------------

    def draft(self, channel: str, data: object = None, event_type: str = "message") -> Draft:
        """Validate one event for ``publish_many``. Raises InvalidName (channel or type outside
        the contract) or InvalidEvent (data not JSON, not valid Unicode, too deep or too big)."""
        try:
            return self.publisher.draft(channel, data, event_type)
        except UnicodeError:
            raise InvalidEvent("data holds text that is not valid Unicode.") from None
        except RecursionError:
            raise InvalidEvent("data is nested too deeply.") from None

    def publish(self, channel: str, data: object = None, event_type: str = "message") -> str | None:
        """Publish after the current transaction commits (outbox) or request succeeds; at once
        when there is neither.

        With the outbox, in a request or an app context: validates now (raises like ``draft``),
        queues the event on ``db.session`` and returns None; it is written with the session's
        next commit and relayed after it, and dropped if the session rolls back instead.
        Without it, in a request: queues the event and returns None; the queue is published in
        one batch only if the response status is below 400. Outside a request (jobs, shells)
        or once the response is decided: publishes at once and returns the event's id, raising
        PublishError if Redis did not store it.
        """
        draft = self.draft(channel, data, event_type)
        if self._session_outbox is not None and has_app_context():
            if self._session_outbox.queued() >= self.config.max_batch_events:
                raise InvalidEvent(
                    f"a transaction may publish at most {self.config.max_batch_events} events."
                )
            self._session_outbox.add([draft])
            return None
        if not has_request_context() or request.environ.get(_SETTLED):
            return self.publish_many([draft])[0]
        pending: list[Draft] = request.environ.setdefault(_PENDING, [])
        if len(pending) >= self.config.max_batch_events:
            raise InvalidEvent(
                f"a request may publish at most {self.config.max_batch_events} events."
            )
        pending.append(draft)
        return None

    def publish_now(self, channel: str, data: object = None, event_type: str = "message") -> str:
        """Store and publish one event now, request or not; returns its id. Raises like
        ``draft``, and PublishError when Redis did not confirm (nothing was published)."""
        return self.publish_many([self.draft(channel, data, event_type)])[0]

    def publish_many(
        self, drafts: Iterable[Draft], *, idempotency_key: str | None = None
    ) -> list[str]:
        """Store and publish drafts now, atomically and in order; returns their ids. Raises
        InvalidEvent for more than ``max_batch_events``, PublishError as ``publish_now``, and
        for ``idempotency_key`` what ``Publisher.publish_many`` raises."""
        if self.metrics is None:
            return self.publisher.publish_many(drafts, idempotency_key=idempotency_key)
        drafts = list(drafts)
        started = time.perf_counter()
        try:
            stored = self.publisher.store(drafts, idempotency_key=idempotency_key)
        except PublishError:
            self.metrics.observe("failed", len(drafts), time.perf_counter() - started)
            raise
        outcome = "replayed" if stored.replayed else "stored"
        self.metrics.observe(outcome, len(stored.ids), time.perf_counter() - started)
        return stored.ids

    def cursor(self, channels: Iterable[str]) -> str:
        """The resume cursor at ``channels``' current positions, for a page that renders their
        state and then opens a stream: hand it to the page's EventSource as ``lastEventId``
        (``/streams?token=…&lastEventId=…``), and the stream starts exactly there.

        Call it *before* reading the page's data. With the outbox it is taken in ``db.session``'s
        transaction, so what the page shows and where the stream starts agree (exactly under
        REPEATABLE READ; under READ COMMITTED an event committed while the page renders may be
        both shown and delivered, never missed). Raises RedisUnreachable (503) when Redis does
        not answer.
        """
        if self._session_outbox is not None and has_app_context():
            return page_cursor(
                self.client, channels,
                outbox=self._session_outbox.outbox, within=self._db.session(),
            )
        return page_cursor(self.client, channels)

    # -- tokens -----------------------------------------------------------------------------

    def token_for(
        self, channels: Iterable[str], subject: str | None = None, ttl: int | None = None
    ) -> IssuedToken:
        """A stream token granting ``channels`` (exact names or ``prefix.*``) to ``subject``
        (any label of up to 128 characters, or None) for ``ttl`` seconds (default
        ``token_ttl_seconds``): ``token, expires_at = gate.token_for([...], subject="user-7")``,
        ``expires_at`` in UTC. Raises like ``ChannelTokens.issue``: InvalidName for a bad grant,
        ValueError for a bad ttl or subject or a token longer than ``max_token_bytes``.

        The token is a bearer credential: hand it only to the user it was made for.
        """
        return self.tokens.issue(channels, subject, ttl)

    def revoke(self, subject: str) -> datetime:
        """Revoke token subject ``subject`` now (UTC time returned): its open streams end with
        an ``eventgate.revoked`` event and its tokens issued until now — the same second
        included — are refused; mint its new token a second later or more. Raises ValueError
        for a bad subject, redis errors when Redis does not store the revocation."""
        revoked_at = revocations.revoke(
            self.client, subject, self.config.token_max_ttl_seconds
        )
        return datetime.fromtimestamp(revoked_at, UTC)

    # -- state ------------------------------------------------------------------------------

    @property
    def config(self) -> Config:
        return self._bound(self._config)

    @property
    def client(self) -> redis.Redis:
        """The pooled Redis client (also used for the readiness check)."""
        return self._bound(self._client)

    @property
    def outbox(self) -> Any:
        """The Outbox (shared/outbox.py) when set up with ``db``, else None."""
        return None if self._session_outbox is None else self._session_outbox.outbox

    @property
    def publisher(self) -> Publisher:
        return self._bound(self._publisher)

    @property
    def tokens(self) -> ChannelTokens:
        return self._bound(self._tokens)

    @staticmethod
    def _bound(value: _T | None) -> _T:
        if value is None:
            raise RuntimeError("EventGate is not bound to an app yet: call init_app(app).")
        return value

    def _publish_pending(self, response: Response) -> Response:
        request.environ[_SETTLED] = True
        pending: list[Draft] = request.environ.pop(_PENDING, [])
        if not pending:
            return response
        if response.status_code >= 400:
            if self.metrics is not None:
                self.metrics.observe("discarded", len(pending))
            return response
        try:
            self.publish_many(pending)
        except PublishError as error:
            current_app.logger.warning(
                "after-request publish of %d event(s) failed: %s", len(pending), error.message
            )
            return publish_failed_response(error)
        return response


def _session_outbox(app: Flask, db: Any, publisher: Publisher) -> Any:
    """The SessionOutbox over ``db``'s default engine (imported only when asked for: the base
    install has no SQLAlchemy)."""
    from eventgate.shared.outbox import Outbox
    from eventgate.web.transactional import SessionOutbox

    with app.app_context():
        engine = db.engine
    return SessionOutbox(Outbox(engine, publisher), db.session)


def current_eventgate() -> EventGate:
    """The EventGate of the app handling the current request or app context."""
    gate = current_app.extensions.get(EXTENSION_KEY)
    if not isinstance(gate, EventGate):
        raise RuntimeError("this app has no EventGate: call EventGate(app) or init_app(app).")
    return gate
