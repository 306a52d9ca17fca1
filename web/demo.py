"""The live demo at ``/``: type a message, every open tab shows it through the stream pool.

It is also the smallest complete example of the pattern eventgate is for: the page asks its own
app for a short-lived token (``POST /demo/token``), opens ``EventSource("/streams?token=…")`` on the
same origin, and the app publishes with the after-commit ``EventGate.publish``. The demo routes
need no key on purpose, so they are confined to one channel, a short token and bounded text.
"""

from __future__ import annotations

from flask import Blueprint, jsonify, render_template, request

from eventgate.shared.errors import InvalidRequest
from eventgate.web import pages
from eventgate.web.extension import current_eventgate
from eventgate.web.isotime import iso_utc
from eventgate.web.jsonio import read_fields, read_json

DEMO_CHANNEL = "demo.lobby"
DEMO_EVENT_TYPE = "demo.message"
MAX_TEXT_CHARS = 500
#: Short on purpose: the page shows the refresh-and-resume path within minutes.
DEMO_TOKEN_TTL_SECONDS = 300


bp = Blueprint("demo", __name__)
pages.protect(bp)


@bp.get("/")
def page() -> str:
    return render_template(
        "demo.html", channel=DEMO_CHANNEL, max_text_chars=MAX_TEXT_CHARS
    )


@bp.post("/demo/token")
def token():  # type: ignore[no-untyped-def]
    """A token for the demo channel only, valid for a few minutes — or for ``?ttl=N`` seconds
    (at most that), so that the page's token refresh can be watched, and tested — and the
    channel's current cursor."""
    gate = current_eventgate()
    ttl = min(requested_ttl(), gate.config.token_max_ttl_seconds)
    # No subject: the demo has no users, and one shared subject would put every visitor's tabs
    # under one per-subject stream limit. The per-worker and per-address limits still apply.
    token, expires_at = gate.token_for([DEMO_CHANNEL], ttl=ttl)
    # The channel's position now: eventgate.js starts its first stream there, so a stream that
    # sees no event still has a cursor to resume from (503 when Redis does not answer).
    response = jsonify(token=token, expires_at=iso_utc(expires_at),
                       cursor=gate.cursor([DEMO_CHANNEL]))
    response.headers["Cache-Control"] = "no-store"
    return response, 201


def requested_ttl() -> int:
    """The ``ttl`` query parameter, 1 to DEMO_TOKEN_TTL_SECONDS; that maximum when absent."""
    text = request.args.get("ttl")
    if text is None:
        return DEMO_TOKEN_TTL_SECONDS
    if not (text.isascii() and text.isdigit() and len(text) <= 3) or not (
        1 <= int(text) <= DEMO_TOKEN_TTL_SECONDS
    ):
        raise InvalidRequest(f"ttl must be a whole number of seconds from 1 to "
                             f"{DEMO_TOKEN_TTL_SECONDS}.")
    return int(text)


@bp.post("/demo/messages")
def message():  # type: ignore[no-untyped-def]
    """Body ``{"text": "..."}``: published to the demo channel once this request succeeds."""
    body = read_fields(read_json(), "the body", ("text",))
    text = body["text"]
    if not isinstance(text, str) or not text.strip():
        raise InvalidRequest("text must be a non-empty string.")
    text = text.strip()
    if len(text) > MAX_TEXT_CHARS:
        raise InvalidRequest(f"text must be at most {MAX_TEXT_CHARS} characters.")
    current_eventgate().publish(DEMO_CHANNEL, {"text": text, "at": iso_utc()}, DEMO_EVENT_TYPE)
    return jsonify(status="published"), 201
