"""The production edge, run: deploy/production/ rendered for loopback (its own ports, loopback
upstreams), started with the system's nginx, and asked over TLS what docs/security.md promises.

Its certificate is the test CA's leaf (tests/testca.py). The web node is a small echo server (it
shows what nginx passed on, and can hold a request open); the stream node is a port nothing
listens on, so every stream falls back to nginx's own answer.
Each test that meets a per-address limit connects from its own loopback source address.
"""

from __future__ import annotations

import re
import secrets
import subprocess
import time

import pytest

from tests.clients import Answer, build, read_answer
from tests.fallback import FALLBACK_BODY, assert_spread, fallback_delay
from tests.ops.production import ORIGIN, curl_http2
from tests.servers import LOOPBACK, wait_for

#: A stream token stand-in: it must never reach a log.
TOKEN = "tok-" + secrets.token_urlsafe(24)
GENERATED_ID = re.compile(r"^[0-9a-f]{32}$")  # nginx's $request_id


def json_error(answer: Answer, status: int, error: str) -> None:
    assert answer.status == status, answer
    assert answer.is_json, answer
    assert answer.json()["error"] == error and answer.json()["message"], answer


# (2) and (4): while no stream node answers, a stream is a 200 retry, with CORS.


def test_stream_fallback_is_a_200_retry_with_cors(edge):
    answer = edge.request("GET", f"/streams?token={TOKEN}&channel=a", {"Origin": ORIGIN},
                          source="127.0.0.31")
    assert answer.status == 200, answer
    assert answer.headers["content-type"].startswith("text/event-stream")
    fallback_delay(answer.body)
    assert answer.headers["cache-control"] == "no-cache"
    assert answer.headers["access-control-allow-origin"] == ORIGIN
    assert answer.headers["access-control-allow-credentials"] == "true"
    other = edge.request("GET", f"/streams?token={TOKEN}", {"Origin": "https://evil.example"},
                         source="127.0.0.31")
    assert other.status == 200
    assert "access-control-allow-origin" not in other.headers
    assert "access-control-allow-credentials" not in other.headers


def test_stream_fallback_over_http2(edge, test_ca):
    # No -k: the edge serves the test CA's leaf, which must verify for 127.0.0.1.
    result = subprocess.run(
        [curl_http2(), "--http2", "--cacert", str(test_ca.ca_certificate), "-sS", "-D", "-",
         "--max-time", "10", "--interface", "127.0.0.32", "-w", "%{http_version}",
         "-H", f"Origin: {ORIGIN}", f"https://{LOOPBACK}:{edge.port}/streams?token={TOKEN}"],
        capture_output=True, text=True, timeout=30, check=False,
    )
    assert result.returncode == 0 and result.stdout.startswith("HTTP/2 200"), result
    assert f"access-control-allow-origin: {ORIGIN}" in result.stdout.lower()
    # The head's end, the body, then what -w wrote: the HTTP version.
    body = re.search(r"\n\n(retry: [0-9]+\n\n)2\Z", result.stdout)
    assert body, result
    fallback_delay(body.group(1).encode())


def test_stream_fallback_delays_are_spread(edge):
    """Every browser the edge turns away at once (no node up, every node full) must not come
    back at once: the fallback's retry is jittered over 0.5–1.5 x its base, per answer."""
    # Two streams from each of 32 addresses (127.0.2.x: this test's own), within burst 2.
    answers = [edge.request("GET", f"/streams?token={TOKEN}", source=f"127.0.2.{host}")
               for host in range(1, 33) for _ in range(2)]
    assert all(a.status == 200 and FALLBACK_BODY.fullmatch(a.body) for a in answers), answers
    assert_spread(fallback_delay(answer.body) for answer in answers)


def test_streams_pass_x_accel_buffering_on_unbuffered(streaming_edge):
    """nginx passes the node's X-Accel-Buffering: no on (a proxy in front must not buffer the
    stream either) and still honours it: the first event arrives while the node holds the
    stream open."""
    edge, node = streaming_edge
    with edge.open("127.0.0.47") as sock:
        sock.sendall(build("GET", f"/streams?token={TOKEN}", edge.port))
        answer = read_answer(sock)
        assert answer.status == 200, answer
        assert answer.headers["x-accel-buffering"] == "no"
        assert answer.headers["content-type"] == "text/event-stream"
        data, deadline = answer.body, time.monotonic() + 10
        while b"data: first" not in data and time.monotonic() < deadline:
            if not (chunk := sock.recv(65536)):
                break
            data += chunk
        assert b"data: first" in data and b"data: second" not in data, data
        node.release.set()
        while b"data: second" not in data and time.monotonic() < deadline + 10:
            if not (chunk := sock.recv(65536)):
                break
            data += chunk
    assert b"data: second" in data, data


def test_health_and_metrics_answers_are_json(edge):
    for path in ("/streams/healthz", "/streams/readyz"):
        answer = edge.request("GET", path, source="127.0.0.36")
        json_error(answer, 503, "unavailable")  # a 503 stays a 503: no retry fallback here
        assert answer.headers["retry-after"] == "2"
    # nginx's internal URI for a request line too long is no page either.
    for path in ("/metrics", "/metrics/x", "/streams/metrics", "/.eventgate/uri-too-long"):
        json_error(edge.request("GET", path, source="127.0.0.36"), 404, "not_found")
    # Anything else goes to the web nodes.
    assert edge.request("GET", "/metricsx", source="127.0.0.36").json()["path"] == "/metricsx"


# (1): the app's own body limit, answered 413 JSON by nginx.


def test_body_limit_is_the_apps_own(edge):
    limit = edge.body_limit
    assert limit == 10 * (1024 + 1024)  # what the web app on the nodes computes
    fits = edge.request("POST", "/api/events", {"Content-Type": "application/json"},
                        b"x" * limit, source="127.0.0.37")
    assert fits.status == 200 and fits.json()["body_bytes"] == limit, fits
    head = (f"POST /api/events HTTP/1.1\r\nHost: x\r\nContent-Length: {limit + 1}\r\n"
            "Connection: close\r\n\r\n").encode()
    json_error(edge.send(head, source="127.0.0.37"), 413, "content_too_large")
    chunked = (b"POST /api/events HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
               b"Connection: close\r\n\r\n" + f"{limit + 1:x}\r\n".encode()
               + b"x" * (limit + 1) + b"\r\n0\r\n\r\n")
    json_error(edge.send(chunked, source="127.0.0.37"), 413, "content_too_large")
    # On /streams too (its own error_page would hide the server's, without the proxy include's),
    # and on the metrics paths (no error_page of their own: the server's hold there).
    for path in (b"/streams", b"/metrics", b"/streams/metrics"):
        json_error(edge.send(head.replace(b"/api/events", path), source="127.0.0.37"),
                   413, "content_too_large")


# (2): nginx's own refusals, on both ports.


@pytest.mark.parametrize("plain", [False, True], ids=["https", "http"])
def test_malformed_requests_are_json(edge, plain):
    port = edge.production.http_port if plain else None
    long_uri = "/api/events?" + "a" * 9000
    json_error(edge.request("GET", long_uri, source="127.0.0.38", port=port),
               414, "uri_too_long")
    json_error(edge.request("GET", "/", {"X-Big": "b" * 9000}, source="127.0.0.38", port=port),
               400, "bad_request")
    json_error(edge.send(b"GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", source="127.0.0.38",
                         port=port), 400, "bad_request")
    head = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\nConnection: close\r\n\r\n"
    json_error(edge.send(head, source="127.0.0.38", port=port), 413, "content_too_large")


def test_plain_http_redirects_to_https(edge):
    answer = edge.request("GET", "/streams?channel=a", source="127.0.0.39",
                          port=edge.production.http_port)
    assert answer.status == 301
    assert answer.headers["location"] == (
        f"https://{LOOPBACK}:{edge.port}/streams?channel=a")


# (3) and (4): per-address limits, 429 JSON with CORS; other addresses unaffected.


def test_connections_per_address(edge):
    source = "127.0.0.41"
    held = []
    try:
        for _ in range(edge.production.connections_per_address):
            sock = edge.open(source)
            sock.sendall(build("GET", "/hold", edge.port))
            held.append(sock)
        wait_for(lambda: edge.echo.held == len(held), 10, "the web node to hold the requests")
        refused = edge.request("GET", f"/streams?token={TOKEN}", {"Origin": ORIGIN},
                               source=source)
        json_error(refused, 429, "too_many_requests")
        assert refused.headers["retry-after"] == "1"
        assert refused.headers["access-control-allow-origin"] == ORIGIN
        json_error(edge.request("GET", "/healthz", source=source), 429, "too_many_requests")
        # The metrics paths' `return 404` runs before the limits count: JSON all the same.
        metrics = edge.request("GET", "/metrics", source=source)
        assert metrics.status in (404, 429), metrics
        json_error(metrics, metrics.status,
                   {404: "not_found", 429: "too_many_requests"}[metrics.status])
        assert edge.request("GET", f"/streams?token={TOKEN}", source="127.0.0.42").status == 200
    finally:
        edge.echo.release.set()
        for sock in held:
            sock.close()
    wait_for(lambda: edge.echo.held == 0, 10, "the held requests to end")
    edge.echo.release.clear()


def test_new_streams_per_address(edge):
    source = "127.0.0.43"
    answers = [edge.request("GET", f"/streams?token={TOKEN}", {"Origin": ORIGIN}, source=source)
               for _ in range(6)]
    statuses = [answer.status for answer in answers]
    # rate 1/s, burst 2: the first three pass (as the retry fallback), then 429.
    assert statuses[:3] == [200, 200, 200] and 429 in statuses[3:], statuses
    refused = next(answer for answer in answers if answer.status == 429)
    json_error(refused, 429, "too_many_requests")
    assert refused.headers["access-control-allow-origin"] == ORIGIN
    assert edge.request("GET", f"/streams?token={TOKEN}", source="127.0.0.44").status == 200


# (5): the caller's X-Request-ID only if plain.


@pytest.mark.parametrize("sent, kept", [
    ("req-1._:A", True), ("a" * 128, True), (None, False), ("a" * 129, False),
    ("has space", False), ('quote"d', False), ("semi;colon", False), ("{json}", False),
])
def test_request_id_is_kept_only_when_plain(edge, sent, kept):
    headers = {} if sent is None else {"X-Request-ID": sent}
    answer = edge.request("GET", "/echo", headers, source="127.0.0.45")
    assert answer.status == 200, answer
    passed = answer.json()["x-request-id"]
    if kept:
        assert passed == sent
    else:
        assert GENERATED_ID.match(passed), passed


# (7): no query string (no token) in either log.


def test_logs_never_hold_the_query_string(edge):
    source = "127.0.0.46"
    for _ in range(5):  # the fallback, then 429s from the rate limit
        edge.request("GET", f"/streams?token={TOKEN}&channel=a", source=source)
    edge.send(f"GET /streams?token={TOKEN} HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\n"
              "Connection: close\r\n\r\n".encode(), source=source)
    edge.request("GET", f"/streams?token={TOKEN}" + "a" * 9000, source=source)
    logs = edge.logs(source)
    assert f"{source} " in logs and '"GET /streams HTTP/1.1" 429' in logs
    assert TOKEN not in logs
    assert "?" not in "".join(line for line in logs.splitlines() if line.startswith(source))
