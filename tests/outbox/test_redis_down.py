"""Redis down across 100 committed requests (issue 15), on SQLite and PostgreSQL: each request
answers exactly as the same app without eventgate does, about as fast (the relay thread, not the
request, meets the outage), and once Redis is back every event arrives, in commit order per
channel, once."""

from __future__ import annotations

import json
import statistics
import time

from tests.outbox.shop import log_events
from tests.servers import wait_for

REQUESTS = 100
CHANNELS = 4
#: How much slower than the plain app the slowest request may be (the relay is asynchronous; the
#: margin is for a loaded test machine: measured ~0.01-0.06 s).
ALLOWED_EXTRA_SECONDS = 0.3


def run_requests(shop, channels: list[str]) -> list[tuple[int, bytes, float]]:
    """Create REQUESTS orders round-robin over ``channels``: (status, body, seconds) each."""
    client = shop.app.test_client()
    answers = []
    for number in range(REQUESTS):
        started = time.perf_counter()
        answer = client.post(f"/orders/{channels[number % len(channels)]}")
        answers.append((answer.status_code, answer.data, time.perf_counter() - started))
    return answers


def test_requests_with_redis_down_answer_as_without_eventgate_and_events_follow(
        make_shop_app, make_redis_server, make_config, channel):
    redis = make_redis_server()
    config = make_config(redis_url=redis.url, redis_port=redis.port)
    channels = [f"{channel}.{n}" for n in range(CHANNELS)]

    plain = make_shop_app(config, gated=False)
    expected = run_requests(plain, channels)
    with plain.app.app_context():
        plain.db.drop_all()  # the gated shop starts from the same empty tables, ids included
    redis.stop()
    gated = make_shop_app(config)
    answers = run_requests(gated, channels)

    assert [(status, body) for status, body, _ in answers] == \
        [(status, body) for status, body, _ in expected]
    assert {status for status, _, _ in answers} == {201}
    plain_seconds = [seconds for _, _, seconds in expected]
    gated_seconds = [seconds for _, _, seconds in answers]
    assert max(gated_seconds) < max(plain_seconds) + ALLOWED_EXTRA_SECONDS, \
        (max(plain_seconds), max(gated_seconds))
    assert statistics.mean(gated_seconds) < statistics.mean(plain_seconds) + 0.05, \
        (statistics.mean(plain_seconds), statistics.mean(gated_seconds))
    assert gated.gate.outbox.depth().rows == REQUESTS
    assert gated.gate.outbox.relay_.failed > 0  # the relay thread did meet the outage

    redis.start()  # same port, empty
    client = redis.client()
    # The relay backs off up to 5 s between attempts while Redis is down.
    wait_for(lambda: sum(len(log_events(client, c)) for c in channels) >= REQUESTS, 15,
             "all events relayed once Redis is back")
    created = [json.loads(body) for _, body, _ in answers]
    for name in channels:
        in_commit_order = [order["id"] for order in created if order["channel"] == name]
        delivered = [json.loads(e.data)["order"] for e in log_events(client, name)]
        assert delivered == in_commit_order
    wait_for(lambda: gated.gate.outbox.depth().rows == 0, 5, "every row marked")
    client.close()
