"""SSE framing: events, control events and comments to ``text/event-stream`` bytes. Pure; no I/O.

The only code that writes the stream's wire format, built from plain values (strings, bytes,
numbers): both pools and the tools frame and name control events through here.

Only values eventgate itself produced reach these functions (validated names, server-made ids and
cursors, JSON data that holds no CR/LF), yet each frame builder still refuses CR, LF and NUL in a
field: a bare CR alone is a line break to the WHATWG parser and would inject fields.
"""

from __future__ import annotations

import json

#: Event types under this prefix are eventgate's own control events (loss notices, token
#: expiry); publishers may not use it (shared/names.py), so a browser can trust them.
CONTROL_PREFIX = "eventgate."
#: Events after ``last_seen`` up to ``resumes_after`` on ``channel`` are gone (docs/protocol.md).
LOST_EVENT = CONTROL_PREFIX + "lost"
#: The stream's token expired; the stream ends after it (docs/protocol.md).
TOKEN_EXPIRED_EVENT = CONTROL_PREFIX + "token_expired"
#: The stream's token subject was revoked; the stream ends after it (docs/protocol.md).
REVOKED_EVENT = CONTROL_PREFIX + "revoked"


def _field(value: str, what: str) -> str:
    # Three substring tests, not a loop over CR, LF, NUL: this runs for every event id.
    if "\r" in value or "\n" in value or "\0" in value:
        raise ValueError(f"SSE {what} must not contain CR, LF or NUL")
    return value


def event_body(event_type: str, data: str) -> bytes:
    """The part of an event frame that every subscriber shares: ``event:`` and ``data:`` lines
    and the blank line that dispatches it. ``data`` with line breaks becomes several ``data:``
    lines, which the parser joins back with LF."""
    lines = data.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    out = [f"event: {_field(event_type, 'event type')}\n"]
    out.extend(f"data: {line}\n" for line in lines)
    out.append("\n")
    return "".join(out).encode("utf-8")


def event_body_bytes(event_type: bytes | str, data: bytes | str) -> bytes:
    """``event_body`` for fields that arrive as bytes (events read from Redis, validated again:
    the log is not ours alone). The common case — ASCII, no line break — is joined without
    decoding, byte for byte what ``event_body`` makes of it; anything else goes through it."""
    if (
        type(event_type) is bytes
        and type(data) is bytes
        and data.isascii()
        and event_type.isascii()
        and b"\n" not in data
        and b"\r" not in data
        and b"\n" not in event_type
        and b"\r" not in event_type
        and b"\0" not in event_type
    ):
        return b"event: " + event_type + b"\ndata: " + data + b"\n\n"
    if isinstance(event_type, bytes):
        event_type = event_type.decode("utf-8", "replace")
    if isinstance(data, bytes):
        data = data.decode("utf-8", "replace")
    return event_body(event_type, data)


def lost_body(channel: str, last_seen: str, resumes_after: str) -> bytes:
    """The body of the ``eventgate.lost`` control event: events on ``channel`` after
    ``last_seen`` up to and including ``resumes_after`` are gone; delivery continues after it.
    Its ``id:`` line is the connection's (its cursor at ``resumes_after``)."""
    data = json.dumps(
        {"channel": channel, "last_seen": last_seen, "resumes_after": resumes_after},
        separators=(",", ":"),
    )
    return event_body(LOST_EVENT, data)


def token_expired(cursor: str, expired_at: float) -> bytes:
    """The ``eventgate.token_expired`` control event sent before a stream whose token expired is
    closed; ``cursor`` repeats the connection's current one, so the client resumes from it
    with a new token and nothing is skipped or repeated."""
    data = json.dumps({"expired_at": expired_at}, separators=(",", ":"))
    return frame(cursor, TOKEN_EXPIRED_EVENT, data)


def revoked(cursor: str, subject: str) -> bytes:
    """The ``eventgate.revoked`` control event sent before a stream whose token subject was
    revoked is closed; its reconnect with the same token is refused (401 ``token_revoked``)."""
    data = json.dumps({"subject": subject}, separators=(",", ":"))
    return frame(cursor, REVOKED_EVENT, data)


def id_line(cursor: str) -> bytes:
    """The ``id:`` line that precedes an event body; ``cursor`` is what the client resumes from."""
    return f"id: {_field(cursor, 'id')}\n".encode("ascii")


def frame(cursor: str, event_type: str, data: str) -> bytes:
    """A whole event: ``id:``, ``event:``, ``data:`` and the dispatching blank line."""
    return id_line(cursor) + event_body(event_type, data)


def position(cursor: str) -> bytes:
    """An ``id:`` field in a frame of its own. It dispatches no event, yet a client that follows
    the WHATWG parser (EventSource) makes it its last event ID, so a stream that drops before
    its first event still resumes from where it started instead of from "now"."""
    return id_line(cursor) + b"\n"


def retry(milliseconds: int) -> bytes:
    """A ``retry:`` field (reconnection delay) in a frame of its own; it dispatches nothing."""
    return f"retry: {int(milliseconds)}\n\n".encode("ascii")


def comment(text: str = "") -> bytes:
    """A comment frame (heartbeats): ignored by parsers, keeps proxies from timing out."""
    return f": {_field(text, 'comment')}\n\n".encode()
