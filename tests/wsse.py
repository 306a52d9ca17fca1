"""A strict WHATWG event-stream parser: the oracle the tests check eventgate's SSE bytes against.

Follows HTML §9.2.6 "Interpreting an event stream" to the letter, unlike sseclient-py (see
tests/unit/test_wsse.py for where that one deviates):

- the byte stream is UTF-8 decoded with replacement; one leading U+FEFF (BOM) is dropped;
- lines end with CRLF, LF or a bare CR (a CR that ends one chunk and an LF that starts the next
  are one line end);
- a blank line dispatches; ``:`` starts a comment; ``field: value`` loses one space after the colon;
- ``data`` appends value + LF, ``event`` sets the type, ``id`` sets the last-event-ID buffer unless
  the value holds NUL, ``retry`` applies only when the value is all ASCII digits;
- on dispatch the last event ID is set even when data is empty; no event fires for empty data; one
  trailing LF is removed; the type defaults to ``message``;
- an incomplete event (or line) at EOF is discarded.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass

_BOM = "\ufeff"


@dataclass(frozen=True)
class ParsedEvent:
    """One dispatched ``MessageEvent``: its type, data and ``lastEventId``."""

    type: str
    data: str
    last_event_id: str


class Parser:
    """Incremental parser: ``feed`` bytes in any chunks; it returns the events each chunk
    dispatched. ``retry`` is the reconnection time set by the stream (None until one is),
    ``last_event_id`` the UA's last event ID string (what it would send as Last-Event-ID),
    ``comments`` the text of every comment line seen."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._started = False  # whether the first character (a possible BOM) was seen
        self._skip_lf = False  # the previous text ended with CR: a leading LF is its pair
        self._line = ""  # text of the current, unterminated line
        self._data = ""
        self._event_type = ""
        self._id_buffer = ""
        self.last_event_id = ""
        self.retry: int | None = None
        self.comments: list[str] = []

    def feed(self, chunk: bytes) -> list[ParsedEvent]:
        """Parse ``chunk``; return the events it completed, in order."""
        return self._feed_text(self._decoder.decode(chunk, final=False))

    def close(self) -> list[ParsedEvent]:
        """End of stream: flush the decoder; the pending line and event are discarded."""
        events = self._feed_text(self._decoder.decode(b"", final=True))
        self._line = ""
        self._data = ""
        self._event_type = ""
        return events

    def _feed_text(self, text: str) -> list[ParsedEvent]:
        if not text:
            return []
        if not self._started:
            self._started = True
            if text.startswith(_BOM):
                text = text[1:]
        if self._skip_lf and text:
            if text.startswith("\n"):
                text = text[1:]
            self._skip_lf = False
        events: list[ParsedEvent] = []
        start = 0
        i = 0
        n = len(text)
        while i < n:
            ch = text[i]
            if ch == "\r" or ch == "\n":
                line = self._line + text[start:i]
                self._line = ""
                if ch == "\r":
                    if i + 1 < n:
                        if text[i + 1] == "\n":
                            i += 1
                    else:
                        self._skip_lf = True  # the LF, if any, comes in the next chunk
                i += 1
                start = i
                event = self._process_line(line)
                if event is not None:
                    events.append(event)
            else:
                i += 1
        self._line += text[start:]
        return events

    def _process_line(self, line: str) -> ParsedEvent | None:
        if line == "":
            return self._dispatch()
        if line.startswith(":"):
            self.comments.append(line[1:])
            return None
        field, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        self._process_field(field, value)
        return None

    def _process_field(self, field: str, value: str) -> None:
        if field == "event":
            self._event_type = value
        elif field == "data":
            self._data += value + "\n"
        elif field == "id" and "\0" not in value:  # an id holding NUL is ignored
            self._id_buffer = value
        elif field == "retry" and value and all("0" <= ch <= "9" for ch in value):
            self.retry = int(value)  # anything but ASCII digits is ignored
        # any other field is ignored

    def _dispatch(self) -> ParsedEvent | None:
        self.last_event_id = self._id_buffer
        if self._data == "":
            self._event_type = ""
            return None
        data = self._data[:-1] if self._data.endswith("\n") else self._data
        event = ParsedEvent(self._event_type or "message", data, self.last_event_id)
        self._data = ""
        self._event_type = ""
        return event


def parse(data: bytes) -> list[ParsedEvent]:
    """Every event a complete stream ``data`` dispatches (EOF discards an unfinished event)."""
    parser = Parser()
    return parser.feed(data) + parser.close()


def parse_chunks(chunks: list[bytes]) -> tuple[list[ParsedEvent], Parser]:
    """Feed ``chunks`` one by one, then end the stream; the events and the parser's final state."""
    parser = Parser()
    events: list[ParsedEvent] = []
    for chunk in chunks:
        events += parser.feed(chunk)
    events += parser.close()
    return events, parser
