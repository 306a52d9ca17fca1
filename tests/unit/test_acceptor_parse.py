"""The accept fast path's request parser (stream/acceptor.py): what it serves itself and what it
leaves to gunicorn. Declining is always safe (gunicorn + Flask answer as before); serving a
request it should have declined is the bug these tests look for."""

from __future__ import annotations

import pytest

from eventgate.stream.acceptor import parse_stream_request

LIMITS = {"max_line": 8190, "max_fields": 100, "max_field": 8190}


def head(target: str = "/streams?token=t1", *lines: str, method: str = "GET",
         version: str = "HTTP/1.1") -> bytes:
    return ("\r\n".join([f"{method} {target} {version}", "Host: 127.0.0.1", *lines])
            + "\r\n\r\n").encode("latin-1")


def parse(data: bytes):
    return parse_stream_request(data, **LIMITS)


def test_plain_request_is_served_with_everything_it_asks_for():
    data = head("/streams?token=abc&channel=orders&channel=chat.1&lastEventId=1-0",
                "Origin: http://app.test", "X-Request-ID: req-7", "Accept: text/event-stream")
    ask, length, request_id = parse(data + b"pipelined")
    assert ask.token == "abc"
    assert list(ask.channels) == ["orders", "chat.1"]
    assert ask.last_event_id == "1-0"
    assert ask.origin == "http://app.test"
    assert request_id == "req-7"
    assert length == len(data)


def test_header_cursor_wins_over_query_and_cookie_token_is_the_fallback():
    ask, _, _ = parse(head("/streams?lastEventId=1-0", "last-event-id: 5-0",
                           "Cookie: a=b; eventgate_token=from-cookie"))
    assert ask.last_event_id == "5-0"
    assert ask.token == "from-cookie"
    ask, _, _ = parse(head("/streams?token=from-query", "Cookie: eventgate_token=from-cookie"))
    assert ask.token == "from-query"


def test_percent_encoding_and_first_value_like_flask():
    ask, _, _ = parse(head("/streams?token=a%2Bb&token=second&channel=a%2Eb"))
    assert ask.token == "a+b"
    assert list(ask.channels) == ["a.b"]


def test_the_proxys_retry_location_is_kept_and_a_second_one_declined():
    ask, _, _ = parse(head("/streams", "X-Eventgate-Retry-Location: @stream_unavailable"))
    assert ask.retry_location == "@stream_unavailable"
    assert parse(head("/streams"))[0].retry_location is None
    assert parse(head("/streams", "X-Eventgate-Retry-Location: @a",
                      "x-eventgate-retry-location: @b")) is None


def test_no_token_is_still_a_stream_request_and_refused_later():
    ask, _, _ = parse(head("/streams"))
    assert ask.token is None and list(ask.channels) == []


@pytest.mark.parametrize("data", [
    head(method="HEAD"),
    head(method="POST"),
    head(method="OPTIONS"),
    head("/streams/healthz"),
    head("/streams/"),
    head("/stream%73?token=t"),
    head("/metrics"),
    head("*"),
    head(version="HTTP/2.0"),
    head(version="HTTP/1.1 "),
    b"GET /streams?token=t HTTP/1.1\r\nHost: x\r\n",           # head not complete yet
    b"GET  /streams HTTP/1.1\r\n\r\n",                          # double space
    head("/streams?token=t", "Content-Length: 5"),
    head("/streams?token=t", "Content-Length: 0"),
    head("/streams?token=t", "Transfer-Encoding: chunked"),
    head("/streams?token=t", "Expect: 100-continue"),
    head("/streams?token=t", "Upgrade: h2c"),
    head("/streams?token=t", "Last-Event-ID: 1-0", "Last-Event-ID: 2-0"),
    head("/streams?token=t", "Origin: a", "origin: b"),
    head("/streams?token=t", "Cookie: a=1", "Cookie: b=2"),
    head("/streams?token=t", "X_Forwarded_For: 1.2.3.4"),       # underscore: gunicorn drops
    head("/streams?token=t", "Bad Name: x"),
    head("/streams?token=t", "NoColon"),
    head("/streams?token=t", " folded: continuation"),
    head("/streams?token=t", "X-A: tab\there"),
    head("/streams?token=t", "X-A: nul\x00"),
    head("/streams?token=t", "X-A: bare\rcr"),
    head("/streams?token=t", "X-A: bare\nlf"),
    head("/streams?token=t", "X-A: del\x7f"),
    head("/streams?token=t\x01"),
    "GET /streams?token=é HTTP/1.1\r\n\r\n".encode(),
    head("/streams?token=t", "X-A: " + "a" * 9000),
    head("/streams?token=" + "a" * 9000),
    head("/streams?token=t", *[f"X-{i}: v" for i in range(101)]),
])
def test_anything_unusual_is_left_to_gunicorn(data):
    assert parse(data) is None
