"""SSE framing: events and comments to ``text/event-stream`` bytes. Pure; no I/O.

Only values eventgate itself produced reach these functions (validated names, server-made ids and
cursors, JSON data that holds no CR/LF), yet each frame builder still refuses CR, LF and NUL in a
field: a bare CR alone is a line break to the WHATWG parser and would inject fields.
"""

from __future__ import annotations

_FORBIDDEN = ("\r", "\n", "\0")


def _field(value: str, what: str) -> str:
    # Three substring tests, not a generator over _FORBIDDEN: this runs for every event id.
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
