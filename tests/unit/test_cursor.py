"""shared.cursor: the resume cursor (SSE id / Last-Event-ID), parsed as hostile input; format."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from eventgate.shared import cursor
from eventgate.shared.errors import InvalidCursor
from eventgate.shared.sse import id_line
from tests.wsse import parse

ONE = ["orders.42"]
TWO = ["orders.42", "users.7.inbox"]


@pytest.mark.parametrize("text", [None, ""])
def test_no_cursor(text):
    assert cursor.parse(text, TWO) == {}


def test_bare_id_on_a_one_channel_stream():
    assert cursor.parse("1795420498714-0", ONE) == {"orders.42": "1795420498714-0"}


def test_bare_id_on_a_multi_channel_stream_is_refused():
    with pytest.raises(InvalidCursor):
        cursor.parse("1795420498714-0", TWO)


def test_pairs():
    assert cursor.parse("users.7.inbox=5-1,orders.42=3-0", TWO) == {
        "users.7.inbox": "5-1",
        "orders.42": "3-0",
    }


def test_pairs_on_a_one_channel_stream():
    assert cursor.parse("orders.42=3-0", ONE) == {"orders.42": "3-0"}


def test_names_not_on_the_connection_are_ignored():
    # a cursor cannot widen what the token grants
    assert cursor.parse("orders.42=3-0,admin=1-0,orders.43=9-9", TWO) == {"orders.42": "3-0"}
    assert cursor.parse("admin=1-0", TWO) == {}


def test_zero_position():
    assert cursor.parse("0-0", ONE) == {"orders.42": "0-0"}


@pytest.mark.parametrize(
    "text",
    [
        "x",
        "1",
        "1-",
        "-1",
        "1-0-0",
        "1-x",
        " 1-0",
        "1-0 ",
        "+1-0",
        "1" * 21 + "-0",
        "1-" + "1" * 21,
        "orders.42",  # a name without '='
        "orders.42=3-0,users.7.inbox",  # a pair without '='
        "orders.42=3-0,",  # empty trailing part
        ",orders.42=3-0",
        "orders.42=3-0,,users.7.inbox=1-0",
        "orders.42=",
        "orders.42=x",
        "orders.42=3-0=4",
        "=3-0",
        "../x=3-0",
        "*=3-0",
        "a b=3-0",
        "orders.42:3-0",
        "1-0\r\n",
        "1-0\r",
        "1-0\n",
        "orders.42=3-0\r\nid: 1",
        "orders.42=3-0\0",
        "1-0é",
        "١-0",  # Arabic-Indic digit: isdigit() but not ASCII
        "\u00b9-0",  # superscript one: isdigit() but not a number
        "orders.42=1-0," + ",".join(f"c{i}=1-0" for i in range(1000)),  # too long
        "1" * 9000,
    ],
    ids=lambda t: repr(t)[:40],
)
@pytest.mark.parametrize("channels", [ONE, TWO], ids=["one", "two"])
def test_malformed_cursor_is_refused(text, channels):
    with pytest.raises(InvalidCursor) as caught:
        cursor.parse(text, channels)
    assert caught.value.code == "invalid_cursor"
    assert isinstance(caught.value, ValueError)


def test_longest_cursor_is_accepted():
    parts = [f"c.{i:04d}=1795420498714-{i}" for i in range(1000)]
    text = ",".join(parts)
    while len(text) > cursor.MAX_CURSOR_CHARS:
        parts.pop()
        text = ",".join(parts)
    assert cursor.parse(text, ["c.0000"]) == {"c.0000": "1795420498714-0"}


# --- format ------------------------------------------------------------------------------------


def test_format_one_channel_is_the_bare_id():
    assert cursor.format({"orders.42": "5-1"}, "orders.42") == "5-1"


def test_format_puts_the_events_channel_first():
    positions = {"orders.42": "3-0", "users.7.inbox": "5-1", "c": "0-0"}
    assert cursor.format(positions, "users.7.inbox") == "users.7.inbox=5-1,orders.42=3-0,c=0-0"
    assert cursor.format(positions, "orders.42") == "orders.42=3-0,users.7.inbox=5-1,c=0-0"


def test_browser_can_read_the_events_channel_from_the_cursor():
    text = cursor.format({"a": "1-0", "b": "2-0"}, "b")
    assert text.split(",")[0].split("=")[0] == "b"


_NAMES = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,30}", fullmatch=True)
_IDS = st.tuples(st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1)).map(
    lambda t: f"{t[0]}-{t[1]}"
)


@given(st.dictionaries(_NAMES, _IDS, min_size=1, max_size=8), st.data())
def test_round_trip(positions, data):
    first = data.draw(st.sampled_from(sorted(positions)))
    channels = list(positions)
    text = cursor.format(positions, first)
    assert cursor.parse(text, channels) == positions
    # and it is a valid SSE id that reaches the browser unchanged
    events = parse(id_line(text) + b"data: x\n\n")
    assert events[0].last_event_id == text
