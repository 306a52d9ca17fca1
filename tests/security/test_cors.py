"""CORS on /streams: only the configured origins, matched exactly, get Access-Control-Allow-Origin
(with credentials, for the cookie token) — on streams, on refusals, on preflights, and on nginx's
own answers (the retry fallback, 429). Off by default."""

from __future__ import annotations

import pytest

from tests.clients import request, stream_path
from tests.security.secured import ORIGIN
from tests.servers import wait_for


def cors_headers(answer) -> dict[str, str]:
    return {k: v for k, v in answer.headers.items() if k.startswith("access-control-")}


def test_stream_from_the_configured_origin(secured, secret_register, unique):
    token, _ = secured.tokens.issue([f"sec.{unique}"])
    secret_register.add(token)
    answer = request(secured.port, "GET", stream_path(token), {"Origin": ORIGIN})
    assert answer.status == 200
    assert answer.headers["access-control-allow-origin"] == ORIGIN
    assert answer.headers["access-control-allow-credentials"] == "true"
    assert "Origin" in answer.headers["vary"]


@pytest.mark.parametrize("origin", [
    "http://evil.example",
    ORIGIN + ".evil.example",  # suffix trick
    "http://evil.example/" + ORIGIN,
    ORIGIN + ":8080",  # another port is another origin
    ORIGIN.replace("http:", "https:"),
    ORIGIN.upper(),
    ORIGIN + "/",
    "null",  # sandboxed frames and file: pages
    "*",
])
def test_any_other_origin_gets_no_cors_headers(secured, secret_register, unique, origin):
    token, _ = secured.tokens.issue([f"sec.{unique}"])
    secret_register.add(token)
    answer = request(secured.port, "GET", stream_path(token), {"Origin": origin})
    assert answer.status == 200
    assert cors_headers(answer) == {}


def test_refusals_carry_cors_headers_for_the_configured_origin(secured):
    answer = request(secured.port, "GET", "/streams?token=nope", {"Origin": ORIGIN})
    assert answer.status == 401 and answer.json()["error"] == "invalid_token"
    assert answer.headers["access-control-allow-origin"] == ORIGIN
    other = request(secured.port, "GET", "/streams?token=nope", {"Origin": "http://evil.example"})
    assert other.status == 401 and cors_headers(other) == {}


def test_preflight_from_the_configured_origin(secured):
    answer = request(secured.port, "OPTIONS", "/streams", {
        "Origin": ORIGIN, "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "last-event-id",
    })
    assert answer.status == 204
    headers = cors_headers(answer)
    assert headers["access-control-allow-origin"] == ORIGIN
    assert headers["access-control-allow-credentials"] == "true"
    assert headers["access-control-allow-methods"] == "GET"
    assert "last-event-id" in headers["access-control-allow-headers"].lower()
    assert int(headers["access-control-max-age"]) > 0


def test_preflight_from_another_origin_is_refused(secured):
    answer = request(secured.port, "OPTIONS", "/streams", {
        "Origin": "http://evil.example", "Access-Control-Request-Method": "GET"})
    assert answer.status == 403
    assert answer.json()["error"] == "origin_forbidden"
    assert cors_headers(answer) == {}


def test_plain_options_lists_the_methods(secured):
    answer = request(secured.port, "OPTIONS", "/streams")
    assert answer.status == 204
    assert answer.headers["allow"] == "GET, HEAD, OPTIONS"


def test_cors_is_off_by_default(make_pool, tokens, channel):
    pool = make_pool()
    token, _ = tokens.issue([channel])
    answer = request(pool.port, "GET", stream_path(token), {"Origin": ORIGIN})
    assert answer.status == 200 and cors_headers(answer) == {}
    preflight = request(pool.port, "OPTIONS", "/streams", {
        "Origin": ORIGIN, "Access-Control-Request-Method": "GET"})
    assert preflight.status == 403 and cors_headers(preflight) == {}


def test_nginx_answers_carry_cors_headers_too(make_secure_stack, unique):
    # An EventSource retries a 200 "retry:" answer only if it may read it: nginx's fallback while
    # the pool is down, and its 429s, must carry the CORS headers as well.
    stack = make_secure_stack(settings={
        "EVENTGATE_CORS_ORIGINS": ORIGIN,
        "EVENTGATE_STREAM_CONNECT_RATE": "1", "EVENTGATE_STREAM_CONNECT_BURST": "1",
    })
    result = stack.supervisorctl("stop", "stream")
    assert result.returncode == 0, result.stdout + result.stderr

    def fallback():
        answer = request(stack.port, "GET", "/streams?token=x", {"Origin": ORIGIN},
                         source="127.0.0.21")
        return answer if answer.body.startswith(b"retry:") else None

    answer = wait_for(fallback, 10, "nginx's retry fallback")
    assert answer.status == 200
    assert answer.headers["access-control-allow-origin"] == ORIGIN
    assert answer.headers["access-control-allow-credentials"] == "true"
    foreign = request(stack.port, "GET", "/streams?token=x", {"Origin": "http://evil.example"},
                      source="127.0.0.22")
    assert foreign.status == 200 and cors_headers(foreign) == {}

    statuses = []
    for _ in range(4):
        answer = request(stack.port, "GET", "/streams?token=x", {"Origin": ORIGIN},
                         source="127.0.0.23")
        statuses.append(answer.status)
        if answer.status == 429:
            assert answer.headers["access-control-allow-origin"] == ORIGIN
            assert answer.json()["error"] == "too_many_requests"
    assert 429 in statuses, statuses
    stack.supervisorctl("start", "stream")
