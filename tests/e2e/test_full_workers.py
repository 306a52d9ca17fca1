"""Full stream workers, through the deployed stack's nginx (two stream workers sharing their
listeners, a tiny ``EVENTGATE_MAX_STREAMS_PER_WORKER``).

A worker that holds its most streams must not refuse a stream another worker has room for, and
when every worker is full a browser must be told to come back (nginx's 200 ``retry:``
fallback), never given a 503 its EventSource would not retry. Clients that ask the pool
directly still get the JSON 503 with ``Retry-After``; real refusals (401, 403, 400, 429) pass
through nginx as they are. The production edge (deploy/production, TLS) in front of the same
pool answers the same fallback.
"""

from __future__ import annotations

import contextlib
import os
import signal

import pytest

from eventgate.shared.status import read_records
from eventgate.shared.tokens import ChannelTokens
from tests.clients import EventSourceClient, StreamClient, request, stream_path
from tests.fallback import FALLBACK_BODY, in_bounds
from tests.servers import wait_for

CAP = 4
pytestmark = pytest.mark.stack(stream_workers=2, settings={
    "EVENTGATE_MAX_STREAMS_PER_WORKER": str(CAP),
    "EVENTGATE_MAX_STREAMS_PER_SUBJECT": "2",
    "EVENTGATE_HEARTBEAT": "1",
    "EVENTGATE_RETRY_MS": "300",
    "EVENTGATE_STATUS_INTERVAL": "0.2",
})


def records(stack) -> dict[int, int]:
    """pid -> streams held, of each live stream worker (their status records)."""
    return {r["pid"]: r["streams"] for r in read_records(stack.redis())}


def held_by(stack, expected: dict[int, int]) -> None:
    wait_for(lambda: records(stack) == expected, 10, f"the workers to hold {expected}")


def open_stream(port: int, token: str) -> StreamClient:
    """A stream through ``port``, once the answer's head (and a refusal's body) arrived."""
    return StreamClient(port, stream_path(token)).start()


def is_pool_stream(client: StreamClient) -> bool:
    """A stream the pool opened (nginx relays it chunked; its own answers have a length)."""
    return client.is_stream and "content-length" not in client.response_headers


def is_retry_fallback(client: StreamClient) -> bool:
    """nginx's @stream_unavailable: a 200 event stream holding only a jittered ``retry:``, then
    its end."""
    client.ended.wait(5)
    _, separator, body = client.raw.partition(b"\r\n\r\n")
    found = FALLBACK_BODY.fullmatch(body) if separator else None
    return (client.is_stream and client.response_headers.get("content-length") is not None
            and found is not None and in_bounds(int(found.group(1))))


def tokens_of(stack) -> ChannelTokens:
    return ChannelTokens(stack.config.secret_keys)


def in_pool_stream(browser: EventSourceClient) -> bool:
    """Whether the browser's current connection is a stream the pool opened (not the fallback,
    whose ``retry:`` would count as an opening)."""
    current = browser.current
    return current is not None and is_pool_stream(current) and current.parser.retry is not None


@contextlib.contextmanager
def stopped(pid: int):
    """The process ``pid`` stopped (SIGSTOP) for the block: it accepts nothing meanwhile."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def test_a_full_worker_leaves_new_streams_to_the_other(stack, channel):
    tokens = tokens_of(stack)
    wait_for(lambda: len(records(stack)) == 2, 10, "both workers' records")
    first, second = sorted(records(stack))
    token = tokens.issue([channel])[0]
    held: list[StreamClient] = []
    try:
        with stopped(second):  # the other takes every connection: it fills
            held += [open_stream(stack.port, token) for _ in range(CAP)]
        assert all(is_pool_stream(c) for c in held), [c.status for c in held]
        held_by(stack, {first: CAP, second: 0})
        # One at a time, each while the full worker could take it as well as the other.
        for _ in range(CAP):
            client = open_stream(stack.port, token)
            held.append(client)
            assert is_pool_stream(client), (client.status, client.raw[-200:])
        held_by(stack, {first: CAP, second: CAP})
    finally:
        for client in held:
            client.close()
    held_by(stack, {first: 0, second: 0})


def test_when_every_worker_is_full_a_browser_is_told_to_come_back(stack, channel):
    tokens = tokens_of(stack)
    token = tokens.issue([channel])[0]
    held = [open_stream(stack.port, token) for _ in range(2 * CAP)]
    browser = None
    try:
        assert all(is_pool_stream(c) for c in held), [c.status for c in held]
        # Through nginx: the retry fallback, which an EventSource retries...
        through_nginx = open_stream(stack.port, token)
        assert is_retry_fallback(through_nginx), (through_nginx.status, through_nginx.raw)
        # ...asked of the pool directly: the JSON 503, with when to come back.
        direct = request(stack.stream_port, "GET", stream_path(token))
        assert direct.status == 503 and direct.is_json, direct
        assert direct.json()["error"] == "server_busy" and direct.json()["message"]
        assert int(direct.headers["retry-after"]) >= 1
        # A full pool still answers its health checks.
        health = request(stack.stream_port, "GET", "/streams/healthz")
        assert health.status == 200 and health.json()["streams"] == CAP, health

        browser = EventSourceClient(stack.port, token, (channel,)).start()
        wait_for(lambda: browser.connections >= 2, 15, "the browser's retries")
        assert browser.failed_status is None and not in_pool_stream(browser)
        held.pop().close()  # room on one worker: the browser's next attempt gets in
        wait_for(lambda: in_pool_stream(browser), 15, "the browser's stream")
        assert browser.failed_status is None
        assert stack.post("/api/events", {"channel": channel, "data": {"n": 1}})[0] == 201
        assert browser.wait_data([{"n": 1}]) == [{"n": 1}]
    finally:
        if browser is not None:
            browser.stop()
        for client in held:
            client.close()


def test_real_refusals_pass_through_nginx_as_they_are(stack, channel):
    tokens = tokens_of(stack)
    token = tokens.issue([channel], subject=f"subject-{channel}")[0]
    held = [open_stream(stack.port, token) for _ in range(2)]
    try:
        assert all(is_pool_stream(c) for c in held)
        cases = {
            "too_many_streams": (429, stream_path(token)),
            "invalid_token": (401, stream_path("not-a-token")),
            "channel_forbidden": (403, stream_path(token, ("elsewhere",))),
            "invalid_cursor": (400, stream_path(token, (), "x", query_cursor=True)),
        }
        for code, (status, path) in cases.items():
            answer = request(stack.port, "GET", path)
            assert answer.status == status, (code, answer)
            assert answer.json()["error"] == code and answer.json()["message"], answer
            assert "x-accel-redirect" not in answer.headers
    finally:
        for client in held:
            client.close()


def test_the_production_edge_tells_a_browser_to_come_back_too(stack, stack_edge, channel):
    tokens = tokens_of(stack)
    token = tokens.issue([channel])[0]
    port = stack_edge.production.https_port
    held = [StreamClient(port, stream_path(token), tls=True).start() for _ in range(2 * CAP)]
    try:
        assert all(is_pool_stream(c) for c in held), [c.status for c in held]
        fallback = StreamClient(port, stream_path(token), tls=True).start()
        assert is_retry_fallback(fallback), (fallback.status, fallback.raw)
        refused = StreamClient(port, stream_path("not-a-token"), tls=True).start()
        assert refused.status == 401 and refused.json()["error"] == "invalid_token"
    finally:
        for client in held:
            client.close()
