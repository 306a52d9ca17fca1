"""shared.sse frames, byte for byte, and through the strict WHATWG parser (tests/wsse.py)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eventgate.shared import sse
from eventgate.shared.errors import InvalidEvent, InvalidName
from eventgate.shared.events import encode_data
from eventgate.shared.names import validate_event_type
from tests.wsse import ParsedEvent, Parser, parse, parse_chunks

# --- exact bytes -------------------------------------------------------------------------------


def test_frame_exact_bytes():
    assert sse.frame("1-0", "message", '{"a":1}') == b'id: 1-0\nevent: message\ndata: {"a":1}\n\n'


def test_frame_with_multi_channel_cursor_exact_bytes():
    assert sse.frame("orders.42=5-1,users.7.x=3-0", "order.updated", "null") == (
        b"id: orders.42=5-1,users.7.x=3-0\nevent: order.updated\ndata: null\n\n"
    )


def test_frame_is_id_line_plus_event_body():
    assert sse.frame("9-9", "t", "[]") == sse.id_line("9-9") + sse.event_body("t", "[]")
    assert sse.id_line("9-9") == b"id: 9-9\n"
    assert sse.event_body("t", "[]") == b"event: t\ndata: []\n\n"


def test_non_ascii_data_is_utf8():
    assert sse.event_body("t", '"é\u2028"') == 'event: t\ndata: "é\u2028"\n\n'.encode()


def test_event_body_splits_every_line_break_into_data_lines():
    assert sse.event_body("t", "a\r\nb\rc\nd") == (
        b"event: t\ndata: a\ndata: b\ndata: c\ndata: d\n\n"
    )


def test_empty_data_is_one_empty_data_line():
    assert sse.event_body("t", "") == b"event: t\ndata: \n\n"
    assert parse(sse.event_body("t", "")) == [ParsedEvent("t", "", "")]


def test_retry_exact_bytes_and_effect():
    assert sse.retry(3000) == b"retry: 3000\n\n"
    events, parser = parse_chunks([sse.retry(3000)])
    assert events == []
    assert parser.retry == 3000


def test_comment_exact_bytes():
    assert sse.comment("hb") == b": hb\n\n"
    assert sse.comment() == b": \n\n"


def test_comments_and_retry_change_no_state():
    parser = Parser()
    assert parser.feed(sse.frame("1-0", "message", "1")) == [ParsedEvent("message", "1", "1-0")]
    for extra in (sse.comment("hb"), sse.comment(), sse.retry(500), sse.comment("x: y")):
        assert parser.feed(extra) == []
    assert parser.last_event_id == "1-0"
    # the next event is not affected by what came between
    assert parser.feed(sse.event_body("t", "2")) == [ParsedEvent("t", "2", "1-0")]


def test_cr_injection_in_data_is_neutralised():
    # E12: a bare CR in data must not become id:/event: fields
    body = sse.frame("5-0", "message", "hello\rid: 999\revent: admin\r")
    assert parse(body) == [ParsedEvent("message", "hello\nid: 999\nevent: admin\n", "5-0")]


def test_lost_control_event_exact_bytes():
    body = sse.lost_body("orders.42", "5-0", "9-3")
    assert sse.id_line("9-3") + body == (
        b'id: 9-3\nevent: eventgate.lost\n'
        b'data: {"channel":"orders.42","last_seen":"5-0","resumes_after":"9-3"}\n\n'
    )


def test_token_expired_control_event_exact_bytes():
    assert sse.token_expired("a=5-0,b=6-1", 1795420498.5) == (
        b'id: a=5-0,b=6-1\nevent: eventgate.token_expired\ndata: {"expired_at":1795420498.5}\n\n'
    )


def test_control_events_are_under_the_prefix_publishers_may_not_use():
    assert sse.CONTROL_PREFIX == "eventgate."
    for event_type in (sse.LOST_EVENT, sse.TOKEN_EXPIRED_EVENT):
        assert event_type.startswith(sse.CONTROL_PREFIX)
        with pytest.raises(InvalidName):
            validate_event_type(event_type)


@pytest.mark.parametrize(("event_type", "data"), [
    (b"message", b'{"a":1}'),
    (b"t", b""),
    ("t", '"str fields"'),
    (b"t", '{"k":"\u00e9"}'.encode()),  # non-ASCII: through event_body
    (b"t", b"a\rb\nc"),  # line breaks: through event_body, several data: lines
])
def test_event_body_bytes_is_event_body(event_type, data):
    assert sse.event_body_bytes(event_type, data) == sse.event_body(_text(event_type), _text(data))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


@pytest.mark.parametrize("event_type", [b"x\ry", b"x\ny", b"x\0y"])
def test_event_body_bytes_refuses_control_chars_in_the_type(event_type):
    with pytest.raises(ValueError):
        sse.event_body_bytes(event_type, b"{}")


# --- refusals ----------------------------------------------------------------------------------

_BAD = ["x\r\nid: 1", "x\ny", "x\ry", "x\0y", "\r", "\n", "\0", "x\r"]


@pytest.mark.parametrize("value", _BAD)
def test_control_chars_in_event_type_raise(value):
    with pytest.raises(ValueError):
        sse.event_body(value, "{}")
    with pytest.raises(ValueError):
        sse.frame("1-0", value, "{}")


@pytest.mark.parametrize("value", _BAD)
def test_control_chars_in_id_raise(value):
    with pytest.raises(ValueError):
        sse.id_line(value)
    with pytest.raises(ValueError):
        sse.frame(value, "message", "{}")


@pytest.mark.parametrize("value", _BAD)
def test_control_chars_in_comment_raise(value):
    with pytest.raises(ValueError):
        sse.comment(value)


# --- encode_data ----------------------------------------------------------------------------------


def test_encode_data_is_compact_one_line_json():
    assert encode_data({"a": [1, 2], "b": "x\ny"}, 1000) == '{"a":[1,2],"b":"x\\ny"}'


@pytest.mark.parametrize("value", [float("nan"), float("inf"), {1, 2}, {(1, 2): 3}, b"x", object()])
def test_encode_data_refuses_what_json_cannot_carry(value):
    with pytest.raises(InvalidEvent):
        encode_data(value, 1000)


@pytest.mark.parametrize("value", [{1: "a"}, {None: "a"}])
def test_encode_data_refuses_non_string_keys(value):
    # The docstring promises to refuse non-string keys; json.dumps silently turns them into
    # strings, so what subscribers receive would differ from what was published.
    with pytest.raises(InvalidEvent):
        encode_data(value, 1000)


def test_encode_data_size_limit_counts_utf8_bytes():
    assert encode_data("é" * 4, 10) == '"éééé"'  # 2 quotes + 8 bytes
    with pytest.raises(InvalidEvent):
        encode_data("é" * 5, 10)


# --- round trips (Hypothesis) ------------------------------------------------------------------

# any text (no lone surrogates: UTF-8 cannot carry them), rich in the characters that break SSE
_TEXT = st.lists(
    st.one_of(
        st.characters(exclude_categories=("Cs",)),
        st.sampled_from(["\r", "\n", "\r\n", "\0", "\u2028", "\u2029", "\ufeff", "\x85", ":"]),
    ),
    max_size=30,
).map("".join)
_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | _TEXT,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(_TEXT, children, max_size=5),
    max_leaves=20,
)
_EVENT_TYPE = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}", fullmatch=True)
# an SSE id is any text without CR, LF or NUL; id_line encodes ASCII (cursors are ASCII)
_ID = st.text(
    alphabet=st.characters(min_codepoint=1, max_codepoint=127, exclude_characters="\r\n"),
    max_size=40,
)


@settings(max_examples=300)
@given(value=_JSON, event_type=_EVENT_TYPE, cursor=_ID)
def test_json_value_round_trips_through_the_strict_parser(value, event_type, cursor):
    data = encode_data(value, 1 << 20)
    assert not any(ch in data for ch in "\r\n\0")
    events = parse(sse.frame(cursor, event_type, data))
    assert len(events) == 1
    [event] = events
    assert event.type == event_type
    assert event.last_event_id == cursor
    assert event.data == data
    assert json.loads(event.data) == value


@given(text=_TEXT, event_type=_EVENT_TYPE)
def test_event_body_bytes_is_event_body_for_any_text(text, event_type):
    assert sse.event_body_bytes(event_type.encode(), text.encode()) == sse.event_body(
        event_type, text
    )


@given(text=_TEXT, event_type=_EVENT_TYPE)
def test_event_body_text_round_trips_with_line_breaks_normalised(text, event_type):
    events = parse(sse.event_body(event_type, text))
    assert events == [ParsedEvent(event_type, text.replace("\r\n", "\n").replace("\r", "\n"), "")]


@given(
    frames=st.lists(st.tuples(_ID, _EVENT_TYPE, _TEXT), min_size=1, max_size=6),
    cuts=st.sets(st.integers(0, 10_000), max_size=8),
)
def test_a_stream_of_frames_in_any_chunking_dispatches_each_frame(frames, cuts):
    stream = sse.retry(1000) + b"".join(
        sse.frame(cursor, event_type, text) + sse.comment("hb")
        for cursor, event_type, text in frames
    )
    bounds = [0, *sorted(c for c in cuts if c < len(stream)), len(stream)]
    chunks = [stream[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]
    events, parser = parse_chunks(chunks)
    assert events == [
        ParsedEvent(event_type, text.replace("\r\n", "\n").replace("\r", "\n"), cursor)
        for cursor, event_type, text in frames
    ]
    assert parser.retry == 1000
    assert parser.last_event_id == frames[-1][0]
