"""The resume cursor: the SSE ``id`` that holds a connection's position on each of its channels.

Format (ASCII, no CR/LF/NUL, so it is a valid SSE id and a valid Last-Event-ID header):
- one channel on the connection: the bare Redis Stream id of the last event, ``1795420498714-0``;
- several: ``name=id`` pairs joined by ``,``, the channel of the event carrying it first (so a
  browser can tell an event's channel from ``lastEventId.split(",")[0].split("=")[0]``).

The cursor comes back from clients, so ``parse`` treats it as hostile: bounded length, every part
validated, names outside the connection's channels ignored (a cursor cannot widen a grant).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from eventgate.shared.errors import InvalidCursor, InvalidName
from eventgate.shared.events import id_key
from eventgate.shared.names import validate_channel

MAX_CURSOR_CHARS = 8192


def parse(text: str | None, channels: Sequence[str]) -> dict[str, str]:
    """Positions named by ``text`` for the connection's ``channels``; {} for no cursor.

    Raises InvalidCursor (a 400) when the text is malformed or too long. A bare id is accepted
    only for a one-channel connection.
    """
    if text is None or text == "":
        return {}
    if len(text) > MAX_CURSOR_CHARS or not text.isascii():
        raise InvalidCursor("the resume cursor (Last-Event-ID) is too long or not ASCII.")
    if "=" not in text:
        _check_id(text)
        if len(channels) != 1:
            raise InvalidCursor(
                "a bare event id can resume only a one-channel stream; this stream has "
                f"{len(channels)} channels."
            )
        return {channels[0]: text}
    wanted = set(channels)
    positions: dict[str, str] = {}
    for part in text.split(","):
        name, sep, event_id = part.partition("=")
        if not sep:
            raise InvalidCursor("the resume cursor is malformed: expected name=id pairs.")
        try:
            validate_channel(name)
        except InvalidName:
            raise InvalidCursor("the resume cursor names an invalid channel.") from None
        _check_id(event_id)
        if name in wanted:
            positions[name] = event_id
    return positions


def format(positions: Mapping[str, str], first: str) -> str:  # noqa: A001 - pairs with parse
    """The cursor for an event on channel ``first`` given every channel's position."""
    if len(positions) == 1:
        return positions[first]
    rest = ",".join(f"{name}={pos}" for name, pos in positions.items() if name != first)
    return f"{first}={positions[first]}," + rest if rest else f"{first}={positions[first]}"


def _check_id(event_id: str) -> None:
    try:
        id_key(event_id)
    except ValueError:
        raise InvalidCursor("the resume cursor holds a malformed event id.") from None
