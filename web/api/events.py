"""POST /api/events: publish one event or a batch, for backend code holding the publisher key.

A ``201`` is sent only after Redis stored every event of the request (one atomic script run), so
a ``201`` means delivered-or-replayable; if Redis does not confirm, the answer is a ``503`` with
``Retry-After`` and nothing of the request was published.

``Idempotency-Key`` makes a request safe to repeat (after a timeout, a 503, a failover): the same
key with the same events answers the first answer's ids and stores nothing; with other events it
answers ``409 idempotency_key_reused``.
"""

from __future__ import annotations

from collections.abc import Mapping

from flask import Blueprint, jsonify, request

from eventgate.shared.errors import InvalidEvent, InvalidName, InvalidRequest
from eventgate.shared.names import validate_idempotency_key
from eventgate.shared.publisher import Draft
from eventgate.web.auth import require_scope
from eventgate.web.extension import EventGate, current_eventgate
from eventgate.web.jsonio import read_fields, read_json

bp = Blueprint("events", __name__)

_REQUIRED = ("channel",)
_OPTIONAL = ("type", "data")


@bp.post("/events")
def publish_events():  # type: ignore[no-untyped-def]
    """Body: ``{"channel", "type"?, "data"?}`` → ``{"id"}``; or an array of those → ``{"ids"}``."""
    gate = current_eventgate()
    idempotency_key = idempotency_key_of(request.environ)
    body = read_json()
    drafts = drafts_of(gate, body)
    require_scope(draft.channel for draft in drafts)
    ids = gate.publish_many(drafts, idempotency_key=idempotency_key)
    return (jsonify(ids=ids) if isinstance(body, list) else jsonify(id=ids[0])), 201


def idempotency_key_of(environ: Mapping[str, object]) -> str | None:
    """The request's ``Idempotency-Key`` header, or None without one. Raises InvalidRequest
    when it is not 1 to 128 characters of A-Z a-z 0-9 . _ : - (empty included)."""
    value = environ.get("HTTP_IDEMPOTENCY_KEY")
    return None if value is None else validate_idempotency_key(value)


def drafts_of(gate: EventGate, body: object) -> list[Draft]:
    """The validated events of a parsed request body (an event object or an array of them).
    Raises InvalidRequest, InvalidName or InvalidEvent naming the element at fault."""
    if isinstance(body, list):
        if not body:
            raise InvalidRequest("the batch is empty: send at least one event.")
        limit = gate.config.max_batch_events
        if len(body) > limit:
            raise InvalidRequest(f"a batch holds at most {limit} events, not {len(body)}.")
        return [_draft(gate, item, f"event {index}") for index, item in enumerate(body)]
    if isinstance(body, dict):
        return [_draft(gate, body, "the body")]
    raise InvalidRequest("the body must be an event object or a JSON array of them.")


def _draft(gate: EventGate, item: object, what: str) -> Draft:
    fields = read_fields(item, what, _REQUIRED, _OPTIONAL)
    try:
        return gate.draft(fields["channel"], fields.get("data"), fields.get("type", "message"))
    except InvalidName as error:
        raise InvalidName(_about(what, error.message), error.value) from None
    except InvalidEvent as error:
        raise InvalidEvent(_about(what, error.message)) from None


def _about(what: str, message: str) -> str:
    # Name the batch element at fault; a single event's message needs no prefix.
    return message if what == "the body" else f"{what}: {message}"
