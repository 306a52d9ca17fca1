"""Both front doors of a stream request — the accept fast path (stream/acceptor.py) and gunicorn
+ Flask (stream/views.py) — on a real pool: the same request gets the same answer either way.

A request takes the Flask door when the fast path declines it; here an underscored header (which
gunicorn drops, so Flask never sees it) or a head sent in two pieces sends it there. Which door
answered a refusal shows in the head: gunicorn adds its ``Server`` header, the fast path does not.
"""

from __future__ import annotations

import socket
import time

import pytest

from tests.clients import Answer, StreamClient, request, stream_path
from tests.servers import LOOPBACK

FLASK_DOOR = {"X_Via_Flask": "1"}


def _door(answer: Answer) -> str:
    return "flask" if "server" in answer.headers else "fast"


@pytest.mark.parametrize("extra", [{}, FLASK_DOOR], ids=["fast", "flask"])
def test_stream_opens_and_delivers_through_either_door(cors_pool, cors_origin, tokens, publisher,
                                                        channel, extra):
    token, _ = tokens.issue([channel])
    headers = {"Origin": cors_origin, **extra}
    client = StreamClient(cors_pool.port, stream_path(token), headers).start().wait_open()
    ids = [publisher.publish(channel, {"n": n}) for n in range(3)]
    client.wait_events(3)
    assert [event.last_event_id for event in client.events] == ids
    head = client.head_raw.decode().lower()
    assert head.startswith("http/1.1 200 ok\r\n") and head.count("http/1.1") == 1
    assert f"access-control-allow-origin: {cors_origin}" in head
    assert "text/event-stream" in head
    client.close()


REFUSALS = [
    ("/streams", {}, 401, "invalid_token"),
    ("/streams?token=not-a-token", {}, 401, "invalid_token"),
    ("/streams?token={token}&channel=other", {}, 403, None),
    ("/streams?token={token}", {"Last-Event-ID": "garbage id"}, 400, None),
]


@pytest.mark.parametrize("target, headers, status, code", REFUSALS)
def test_refusals_are_the_same_through_either_door(cors_pool, cors_origin, tokens, channel, target,
                                                   headers, status, code):
    token, _ = tokens.issue([channel])
    target = target.format(token=token)
    answers = {}
    for extra in ({}, FLASK_DOOR):
        sent = {"Origin": cors_origin, **headers, **extra}
        answer = request(cors_pool.port, "GET", target, sent)
        answers[_door(answer)] = answer
    assert set(answers) == {"fast", "flask"}
    fast, flask = answers["fast"], answers["flask"]
    assert fast.status == flask.status == status
    assert fast.is_json and flask.is_json
    assert fast.json() == flask.json()
    if code:
        assert fast.json()["error"] == code
    for name in ("www-authenticate", "retry-after", "access-control-allow-origin",
                 "access-control-allow-credentials", "vary"):
        assert fast.headers.get(name) == flask.headers.get(name), name


def test_too_many_channels_is_the_same_through_either_door(cors_pool, tokens):
    token, _ = tokens.issue(["a", "b", "c"])
    target = "/streams?token=" + token
    fast = request(cors_pool.port, "GET", target)
    flask = request(cors_pool.port, "GET", target, FLASK_DOOR)
    assert (_door(fast), _door(flask)) == ("fast", "flask")
    assert fast.status == flask.status == 400
    assert fast.json() == flask.json()
    assert fast.json()["error"] == "too_many_channels"


def test_a_head_sent_in_pieces_takes_the_ordinary_path(cors_pool, tokens, publisher, channel):
    token, _ = tokens.issue([channel])
    with socket.create_connection((LOOPBACK, cors_pool.port), timeout=10) as sock:
        sock.sendall(f"GET {stream_path(token)} HTTP/1.1\r\n".encode())
        time.sleep(0.3)  # on purpose: the fast path peeks an incomplete head, leaves it to gunicorn
        sock.sendall(f"Host: {LOOPBACK}\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(4096)
        assert head.startswith(b"HTTP/1.1 200 OK\r\n")
        event_id = publisher.publish(channel, {"n": 1})
        data = head
        deadline = time.monotonic() + 5
        while f"id: {event_id}".encode() not in data and time.monotonic() < deadline:
            data += sock.recv(4096)
        assert f"id: {event_id}".encode() in data


def test_other_routes_still_go_through_flask(cors_pool):
    answer = request(cors_pool.port, "GET", "/streams/healthz")
    assert answer.status == 200 and answer.json()["status"] == "ok"
    answer = request(cors_pool.port, "OPTIONS", "/streams")
    assert answer.status == 204 and "GET" in answer.headers["allow"]


def test_a_connection_that_never_asks_is_closed_after_the_timeout(make_pool, tokens, channel):
    pool = make_pool(timeout=2)
    with socket.create_connection((LOOPBACK, pool.port), timeout=10) as silent:
        started = time.monotonic()
        assert silent.recv(1) == b""  # closed by the server, not by our 10 s timeout
        assert 1.5 < time.monotonic() - started < 8
    token, _ = tokens.issue([channel])  # the worker still serves everyone else
    answer = request(pool.port, "GET", "/streams?token=" + token)
    assert answer.status == 200


RETRY_AT = {"X-Eventgate-Retry-Location": "@stream_unavailable"}


def test_a_full_worker_refuses_the_same_through_either_door(make_pool, tokens, channel):
    pool = make_pool(max_streams_per_worker="1")
    token, _ = tokens.issue([channel])
    held = StreamClient(pool.port, stream_path(token)).start().wait_open()
    try:
        answers = {}
        for asked in ({}, RETRY_AT, {"X-Eventgate-Retry-Location": "/elsewhere"}):
            for extra in ({}, FLASK_DOOR):
                answer = request(pool.port, "GET", stream_path(token), {**asked, **extra})
                answers[(asked.get("X-Eventgate-Retry-Location"), _door(answer))] = answer
        for (location, door), answer in answers.items():
            assert answer.status == 503, (location, door, answer)
            assert answer.json()["error"] == "server_busy" and answer.json()["message"]
            assert answer.headers["retry-after"] == "1"
            # Told where nginx answers a stream to retry, the worker names it back, with no
            # Content-Type (nginx would keep it on its own answer); nothing else is redirected.
            if location == "@stream_unavailable":
                assert answer.headers["x-accel-redirect"] == location, (door, answer)
                assert "content-type" not in answer.headers, (door, answer)
            else:
                assert "x-accel-redirect" not in answer.headers, (location, door, answer)
                assert answer.is_json, (location, door, answer)
        assert {door for _, door in answers} == {"fast", "flask"}
        # A real refusal is never redirected.
        refused = request(pool.port, "GET", stream_path("not-a-token"), RETRY_AT)
        assert refused.status == 401 and "x-accel-redirect" not in refused.headers
    finally:
        held.close()
