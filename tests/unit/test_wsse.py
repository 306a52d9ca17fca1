"""The strict WHATWG parser (tests/wsse.py) against the spec's own examples and rules, so that it
can serve as the oracle for eventgate's SSE bytes. Also pins where sseclient-py deviates (E13)."""

from __future__ import annotations

import pytest
import sseclient
from hypothesis import given
from hypothesis import strategies as st

from tests.wsse import ParsedEvent, Parser, parse, parse_chunks


def ev(data: str, type_: str = "message", last_event_id: str = "") -> ParsedEvent:
    return ParsedEvent(type_, data, last_event_id)


# --- examples from HTML §9.2.5 / §9.2.6 -----------------------------------------------------


def test_spec_example_stock_ticker_multiline_data():
    assert parse(b"data: YHOO\ndata: +2\ndata: 10\n\n") == [ev("YHOO\n+2\n10")]


def test_spec_example_comment_ids_and_space_removal():
    stream = (
        b": test stream\n\n"
        b"data: first event\nid: 1\n\n"
        b"data:second event\nid\n\n"
        b"data:  third event\n\n"
    )
    assert parse(stream) == [
        ev("first event", last_event_id="1"),
        ev("second event", last_event_id=""),  # a bare "id" line resets the id
        ev(" third event", last_event_id=""),  # only ONE space after the colon is removed
    ]


def test_spec_example_empty_data_fields_and_unterminated_block():
    # "The first block fires events with the data set to the empty string, as would the last
    # block if it was followed by a blank line. The middle block fires an event with the data set
    # to a single newline character."
    assert parse(b"data\n\ndata\ndata\n\ndata:") == [ev(""), ev("\n")]


def test_spec_example_space_after_colon_is_optional():
    assert parse(b"data:test\n\ndata: test\n\n") == [ev("test"), ev("test")]


def test_spec_example_named_events():
    stream = (
        b"event: add\ndata: 73857293\n\nevent: remove\ndata: 2153\n\nevent: add\ndata: 113411\n\n"
    )
    assert parse(stream) == [ev("73857293", "add"), ev("2153", "remove"), ev("113411", "add")]


# --- line endings ------------------------------------------------------------------------------


@pytest.mark.parametrize("eol", [b"\r\n", b"\n", b"\r"])
def test_every_line_ending_is_accepted(eol):
    stream = b"event: e" + eol + b"data: a" + eol + b"data: b" + eol + b"id: 3" + eol + eol
    assert parse(stream) == [ev("a\nb", "e", "3")]


def test_mixed_line_endings():
    assert parse(b"data: a\rdata: b\r\ndata: c\n\r\n") == [ev("a\nb\nc")]


def test_cr_injection_e12():
    # A bare CR is a line end: a data payload that holds one injects fields.
    assert parse(b"data: hello\rid: 999\revent: admin\r\n\n") == [ev("hello", "admin", "999")]


def test_cr_at_chunk_end_followed_by_lf_is_one_line_end():
    parser = Parser()
    assert parser.feed(b"data: a\r") == []
    assert parser.feed(b"\n") == []  # the LF completes the CRLF: no blank line yet
    assert parser.feed(b"\n") == [ev("a")]


def test_cr_at_chunk_end_followed_by_cr_is_two_line_ends():
    parser = Parser()
    assert parser.feed(b"data: a\r") == []
    assert parser.feed(b"\r") == [ev("a")]


def test_cr_at_chunk_end_then_empty_chunk_then_lf():
    parser = Parser()
    parser.feed(b"data: a\r")
    parser.feed(b"")
    assert parser.feed(b"\ndata: b\n\n") == [ev("a\nb")]


# --- fields ------------------------------------------------------------------------------------


def test_line_without_colon_is_a_field_with_empty_value():
    assert parse(b"data\n\n") == [ev("")]


def test_unknown_fields_and_wrong_case_are_ignored():
    assert parse(b"foo: bar\nData: x\nEVENT: y\ndata: z\n\n") == [ev("z")]


def test_value_keeps_later_colons_and_spaces():
    assert parse(b"data: a: b :c \n\n") == [ev("a: b :c ")]


def test_field_name_with_leading_space_is_unknown():
    assert parse(b" data: x\n\n") == []


def test_comments_dispatch_nothing_and_are_recorded():
    events, parser = parse_chunks([b": hb\n\n:\n\n: x: y\n\n"])
    assert events == []
    assert parser.comments == [" hb", "", " x: y"]
    assert parser.last_event_id == ""


def test_comment_inside_an_event_is_skipped():
    assert parse(b"data: a\n: comment\ndata: b\n\n") == [ev("a\nb")]


def test_event_type_resets_after_dispatch():
    assert parse(b"event: x\ndata: a\n\ndata: b\n\n") == [ev("a", "x"), ev("b")]


def test_event_type_resets_even_when_nothing_fired():
    assert parse(b"event: x\n\ndata: b\n\n") == [ev("b")]


def test_empty_event_type_defaults_to_message():
    assert parse(b"event:\ndata: a\n\n") == [ev("a")]


def test_last_event_id_persists_across_events():
    assert parse(b"id: 5\ndata: a\n\ndata: b\n\n") == [
        ev("a", last_event_id="5"),
        ev("b", last_event_id="5"),
    ]


def test_last_event_id_is_set_even_when_data_is_empty():
    events, parser = parse_chunks([b"id: 7\n\n"])
    assert events == []
    assert parser.last_event_id == "7"


def test_last_event_id_is_only_set_on_dispatch():
    parser = Parser()
    parser.feed(b"id: 7\ndata: x\n")
    assert parser.last_event_id == ""
    parser.feed(b"\n")
    assert parser.last_event_id == "7"


def test_id_containing_nul_is_ignored():
    stream = b"id: 1\ndata: a\n\nid: 2\x003\ndata: b\n\n"
    assert parse(stream) == [ev("a", last_event_id="1"), ev("b", last_event_id="1")]


def test_id_may_hold_any_other_text():
    assert parse(b"id: a=1-0,b:c \xc3\xa9\ndata: x\n\n") == [ev("x", last_event_id="a=1-0,b:c é")]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"retry: 1000", 1000),
        (b"retry:0", 0),
        (b"retry: 007", 7),
        (b"retry: 1000x", None),
        (b"retry: -1", None),
        (b"retry: 1.5", None),
        (b"retry:  1000", None),  # the second space stays in the value
        (b"retry: ", None),
        (b"retry", None),
        ("retry: \u0661\u0662".encode(), None),  # Arabic-Indic digits are not ASCII digits
        ("retry: \uff11".encode(), None),  # fullwidth 1
    ],
)
def test_retry_applies_only_when_all_ascii_digits(line, expected):
    events, parser = parse_chunks([line + b"\n\n"])
    assert events == []
    assert parser.retry == expected


def test_retry_does_not_dispatch_or_touch_the_event():
    assert parse(b"data: a\nretry: 10\n\n") == [ev("a")]


# --- decoding ----------------------------------------------------------------------------------


def test_one_leading_bom_is_stripped():
    assert parse(b"\xef\xbb\xbfdata: x\n\n") == [ev("x")]


def test_only_one_bom_is_stripped():
    # the second BOM becomes part of the field name "\ufeffdata": an unknown field
    assert parse(b"\xef\xbb\xbf\xef\xbb\xbfdata: x\n\ndata: y\n\n") == [ev("y")]


def test_bom_split_across_chunks_is_stripped():
    events, _ = parse_chunks([b"\xef", b"\xbb", b"\xbfdata: x\n\n"])
    assert events == [ev("x")]


def test_bom_later_in_stream_is_kept():
    assert parse(b"data: a\n\ndata: \xef\xbb\xbfb\n\n") == [ev("a"), ev("\ufeffb")]


def test_invalid_utf8_is_replaced():
    assert parse(b"data: \xff\xfe a\n\n") == [ev("\ufffd\ufffd a")]


def test_multibyte_character_split_across_chunks():
    events, _ = parse_chunks([b"data: \xe2", b"\x80", b"\xa8 \xf0\x9f", b"\x98\x80\n\n"])
    assert events == [ev("\u2028 \U0001f600")]  # U+2028 is not a line end in SSE


@pytest.mark.parametrize("sep", ["\u2028", "\u2029", "\u0085", "\x0b", "\x0c", "\x1c"])
def test_only_cr_and_lf_end_lines(sep):
    assert parse(f"data: a{sep}b\n\n".encode()) == [ev(f"a{sep}b")]


def test_nul_in_data_is_kept():
    assert parse(b"data: a\x00b\n\n") == [ev("a\x00b")]


# --- end of stream -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "stream",
    [b"data: a", b"data: a\n", b"data: a\r", b"data: a\r\n", b"event: x\ndata: a\nid: 1\n"],
)
def test_incomplete_event_at_eof_is_discarded(stream):
    events, parser = parse_chunks([stream])
    assert events == []
    assert parser.last_event_id == ""


def test_complete_events_before_an_incomplete_one_are_kept():
    assert parse(b"data: a\n\ndata: b\n") == [ev("a")]


def test_feed_returns_events_as_soon_as_they_complete():
    parser = Parser()
    assert parser.feed(b"data: a\n") == []
    assert parser.feed(b"\ndata: b\n\ndata: c") == [ev("a"), ev("b")]
    assert parser.close() == []


# --- chunking does not matter ------------------------------------------------------------------

_PIECES = st.sampled_from(
    [
        b"data: x",
        b"data",
        b":",
        b": c",
        b"id: 1",
        b"id: \x00",
        b"event: e",
        b"retry: 5",
        b"\r",
        b"\n",
        b"\r\n",
        b"\xef\xbb\xbf",
        b"\xe2\x80\xa8",
        b"\xc3\xa9",
        b"\xff",
        b" ",
    ]
)


@given(st.lists(_PIECES, max_size=40), st.data())
def test_any_chunking_gives_the_same_events_and_state(pieces, data):
    stream = b"".join(pieces)
    cuts = sorted(data.draw(st.sets(st.integers(0, len(stream)), max_size=10)))
    bounds = [0, *cuts, len(stream)]
    chunks = [stream[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]
    whole, whole_parser = parse_chunks([stream])
    bytewise, bytewise_parser = parse_chunks([stream[i : i + 1] for i in range(len(stream))])
    chunked, chunked_parser = parse_chunks(chunks)
    assert chunked == whole == bytewise
    for parser in (chunked_parser, bytewise_parser):
        assert parser.last_event_id == whole_parser.last_event_id
        assert parser.retry == whole_parser.retry


# --- where sseclient-py 1.9 deviates (E13): why it is not the oracle ---------------------------


def _sseclient(stream: bytes) -> list[tuple[str, str, str | None]]:
    return [(e.event, e.data, e.id) for e in sseclient.SSEClient([stream]).events()]


def test_e13_bom_sseclient_drops_first_event():
    stream = b"\xef\xbb\xbfdata: first\n\ndata: second\n\n"
    assert parse(stream) == [ev("first"), ev("second")]
    assert _sseclient(stream) == [("message", "second", None)], "sseclient-py changed: see E13"


def test_e13_nul_in_id_sseclient_accepts_it():
    stream = b"id: 1\x002\ndata: x\n\n"
    assert parse(stream) == [ev("x", last_event_id="")]
    assert _sseclient(stream) == [("message", "x", "1\x002")], "sseclient-py changed: see E13"


def test_e13_unterminated_event_at_eof_sseclient_dispatches_it():
    stream = b"data: done\n\ndata: partial\n"
    assert parse(stream) == [ev("done")]
    assert _sseclient(stream) == [("message", "done", None), ("message", "partial", None)], (
        "sseclient-py changed: see E13"
    )
