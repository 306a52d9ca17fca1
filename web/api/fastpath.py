"""FastPublish: a ``POST /api/events`` that will succeed, answered without Flask's machinery.

Publishing is the web tier's hot path, and for a single event Flask's request handling (the
request context, routing, hooks, request and response objects, ``jsonify``) cost about as much
CPU as everything else together. This WSGI wrapper (``app.wsgi_app``) takes a publish request
it can answer exactly as the view in web/api/events.py would, with the same checks in the same
order and the same functions: the request id bound for its log lines, the publisher key
(``web.auth.key_of``) before the body is read, a JSON body of ``Content-Length`` bytes within
``MAX_CONTENT_LENGTH``, the events validated (``drafts_of``), every channel within the key's
scope, then one ``publish_many`` (metrics included) and the ``201``. An ``Idempotency-Key`` is
read with the view's function too (a malformed one goes to Flask for its 400).

Whatever else — any refusal, another JSON content type, a chunked or oversized body, a body
that does not parse — goes to Flask untouched, the body it read put back, before anything was
published: every error answer stays the one Flask gives. Only a publish that Redis did not
confirm is answered here (the view's 503): handing it on would publish a second time; so is an
idempotency key reused for other events (the view's 409), for the same answer without running
the script again.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterable

from flask import Flask

from eventgate.shared import logformat
from eventgate.shared.errors import IdempotencyKeyReused, InvalidRequest, PublishError
from eventgate.shared.publisher import Draft
from eventgate.shared.publishkeys import parse_publish_keys
from eventgate.web.api.events import drafts_of, idempotency_key_of
from eventgate.web.auth import key_of
from eventgate.web.errors import eventgate_error_response
from eventgate.web.extension import EventGate

PATH = "/api/events"
_JSON = "application/json"

WsgiApp = Callable[[dict, Callable], Iterable[bytes]]


class FastPublish:
    """Wraps ``app.wsgi_app``; see the module docstring."""

    def __init__(self, app: Flask, gate: EventGate, wsgi_app: WsgiApp) -> None:
        self.app = app
        self.gate = gate
        self.wsgi_app = wsgi_app

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != PATH or environ.get("REQUEST_METHOD") != "POST":
            return self.wsgi_app(environ, start_response)
        logformat.bind_request_id(environ.get("HTTP_X_REQUEST_ID"))
        accepted = self._accept(environ)
        if accepted is None:
            return self.wsgi_app(environ, start_response)
        drafts, batch, idempotency_key = accepted
        try:
            ids = self.gate.publish_many(drafts, idempotency_key=idempotency_key)
        except (PublishError, IdempotencyKeyReused) as error:
            with self.app.app_context():
                response = eventgate_error_response(error)
            return response(environ, start_response)
        # What jsonify writes (compact, a trailing newline); stream ids (``ms-seq``, made by
        # Redis) need no escaping.
        body = (
            b'{"ids":["' + '","'.join(ids).encode("ascii") + b'"]}\n' if batch
            else b'{"id":"' + ids[0].encode("ascii") + b'"}\n'
        )
        start_response("201 CREATED", [
            ("Content-Type", _JSON), ("Content-Length", str(len(body))),
        ])
        return [body]

    def _accept(self, environ: dict) -> tuple[list[Draft], bool, str | None] | None:
        """The request's validated events, whether it was a batch and its idempotency key, or
        None for Flask."""
        keys = parse_publish_keys(self.gate.config.publish_keys)
        entry = key_of(environ.get("HTTP_AUTHORIZATION", ""), keys)
        if entry is None:
            return None
        try:
            idempotency_key = idempotency_key_of(environ)
        except InvalidRequest:
            return None
        if environ.get("CONTENT_TYPE", "").partition(";")[0].strip().lower() != _JSON:
            return None
        length = environ.get("CONTENT_LENGTH", "")
        limit = self.app.config["MAX_CONTENT_LENGTH"]
        if (not (length.isascii() and length.isdigit()) or int(length) > limit
                or "HTTP_TRANSFER_ENCODING" in environ):
            return None
        body = environ["wsgi.input"].read(int(length))
        environ["wsgi.input"] = io.BytesIO(body)  # for Flask, should it answer after all
        try:
            parsed = json.loads(body)
            drafts = drafts_of(self.gate, parsed)
        except Exception:  # noqa: BLE001 - nothing is published yet: Flask answers it as it would
            return None
        if not all(entry.allows_channel(draft.channel) for draft in drafts):
            return None
        return drafts, isinstance(parsed, list), idempotency_key


def install(app: Flask, gate: EventGate) -> None:
    """Put the fast path in front of ``app``'s WSGI callable."""
    app.wsgi_app = FastPublish(app, gate, app.wsgi_app)  # type: ignore[method-assign]
