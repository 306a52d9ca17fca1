"""The history pages: ``GET /api/channels/<channel>/events`` (web app, publisher key) and
``GET /streams/history`` (stream pool, token), compared with the log itself (XRANGE)."""

from __future__ import annotations

from urllib.parse import quote, urlencode

import pytest

from eventgate.web.app import create_app
from tests.clients import StreamClient, request, stream_path
from tests.history.pages import expected_events, walk
from tests.servers import free_port
from tests.stream.pool import StreamPool, pool_settings


def _publish(publisher, channel: str, count: int) -> list[str]:
    drafts = [publisher.draft(channel, {"n": n, "text": "é"}, f"kind{n % 3}")
              for n in range(count)]
    return publisher.publish_many(drafts)


def _web_fetch(web, auth):
    def fetch(target: str):
        answer = web.get(target, headers=auth)
        return answer.status_code, {k.lower(): v for k, v in answer.headers.items()}, answer.json

    return fetch


def _pool_fetch(pool):
    def fetch(target: str):
        answer = request(pool.port, "GET", target)
        return answer.status, answer.headers, answer.json()

    return fetch


def test_web_pages_follow_the_log(web, auth, publisher, redis_server, channel):
    ids = _publish(publisher, channel, 105)
    expected = expected_events(redis_server.client(), channel)
    assert [event["id"] for event in expected] == ids
    first = web.get(f"/api/channels/{channel}/events", headers=auth)
    assert first.status_code == 200 and len(first.json["events"]) == 100  # the default limit
    assert first.json["events"] == expected[:100] and first.json["next"] == ids[99]
    pages = walk(_web_fetch(web, auth), f"/api/channels/{channel}/events?limit=20")
    assert [len(page["events"]) for page in pages] == [20, 20, 20, 20, 20, 5]
    assert [event for page in pages for event in page["events"]] == expected
    # From the middle, and a page that ends exactly at the log's end has no next.
    middle = web.get(f"/api/channels/{channel}/events?after={ids[94]}&limit=10", headers=auth)
    assert middle.json == {"events": expected[95:], "next": None}
    assert "Link" not in middle.headers
    empty = web.get(f"/api/channels/{channel}/events?after={ids[-1]}", headers=auth)
    assert empty.json == {"events": [], "next": None}


def test_stream_pages_match_the_web_pages(history_pool, tokens, web, auth, publisher, channel):
    _publish(publisher, channel, 7)
    token, _ = tokens.issue([channel])
    path = f"/streams/history?token={quote(token)}&channel={channel}&limit=3"
    pages = walk(_pool_fetch(history_pool), path)
    by_web = walk(_web_fetch(web, auth), f"/api/channels/{channel}/events?limit=3")
    assert pages == by_web and [len(page["events"]) for page in pages] == [3, 3, 1]
    answer = request(history_pool.port, "GET", path)
    assert f"&{urlencode({'token': token})}&" in answer.headers["link"].replace("?", "&")
    assert answer.headers["cache-control"] == "no-store"


WEB_REFUSALS = [
    ("?limit=0", 400, "invalid_request"),
    ("?limit=1001", 400, "invalid_request"),
    ("?limit=ten", 400, "invalid_request"),
    ("?limit=-5", 400, "invalid_request"),
    ("?limit=", 400, "invalid_request"),
    ("?after=yesterday", 400, "invalid_request"),
    ("?after=", 400, "invalid_request"),
    ("?after=1-2-3", 400, "invalid_request"),
    ("?after=18446744073709551616-0", 400, "invalid_request"),  # over 64 bits: Redis refuses it
    ("?after=18446744073709551615-18446744073709551615", 400, "invalid_request"),
]


@pytest.mark.parametrize("query, status, code", WEB_REFUSALS)
def test_web_refusals(web, auth, channel, query, status, code):
    answer = web.get(f"/api/channels/{channel}/events{query}", headers=auth)
    assert (answer.status_code, answer.json["error"]) == (status, code)
    assert answer.json["message"].endswith(".")


def test_web_refuses_bad_names_keys_and_scopes(web, auth, make_config, publish_key, channel):
    answer = web.get("/api/channels/-bad/events", headers=auth)
    assert (answer.status_code, answer.json["error"]) == (400, "invalid_name")
    answer = web.get(f"/api/channels/{channel}/events")
    assert (answer.status_code, answer.json["error"]) == (401, "unauthorized")
    scoped = create_app(make_config(publish_keys=(f"{publish_key}:orders.*",))).test_client()
    answer = scoped.get(f"/api/channels/{channel}/events", headers=auth)
    assert (answer.status_code, answer.json["error"]) == (403, "channel_forbidden")
    assert "may not read channel" in answer.json["message"]
    assert scoped.get("/api/channels/orders.1/events", headers=auth).status_code == 200


def test_redis_down_is_a_503(make_config, auth, channel):
    down = f"redis://127.0.0.1:{free_port()}/0"
    web = create_app(make_config(redis_url=down)).test_client()
    answer = web.get(f"/api/channels/{channel}/events", headers=auth)
    assert answer.status_code == 503 and answer.json["error"] == "redis_unreachable"
    assert answer.headers["Retry-After"] == "1"


def test_stream_refusals(history_pool, tokens, channel):
    token, _ = tokens.issue([channel])
    other, _ = tokens.issue(["elsewhere"])
    base = f"/streams/history?token={quote(token)}&channel={channel}"
    cases = [
        (f"/streams/history?channel={channel}", 401, "invalid_token"),
        (f"/streams/history?token=forged&channel={channel}", 401, "invalid_token"),
        (f"/streams/history?token={quote(other)}&channel={channel}", 403, "channel_forbidden"),
        (f"/streams/history?token={quote(token)}", 400, "invalid_request"),
        (f"/streams/history?token={quote(token)}&channel=-bad", 400, "invalid_name"),
        (base + "&limit=0", 400, "invalid_request"),
        (base + "&limit=1001", 400, "invalid_request"),
        (base + "&after=nope", 400, "invalid_request"),
    ]
    for target, status, code in cases:
        answer = request(history_pool.port, "GET", target)
        assert (answer.status, answer.json()["error"]) == (status, code), target
    assert "www-authenticate" in request(history_pool.port, "GET", cases[0][0]).headers


def test_a_page_id_resumes_a_stream_exactly_after_it(history_pool, tokens, web, auth, publisher,
                                                       channel):
    ids = _publish(publisher, channel, 6)
    page = web.get(f"/api/channels/{channel}/events?limit=4", headers=auth).json
    assert page["next"] == ids[3]
    token, _ = tokens.issue([channel])
    client = StreamClient(history_pool.port, stream_path(token),
                          {"Last-Event-ID": page["next"]}).start()
    later = publisher.publish(channel, {"n": 6})
    events = client.wait_events(3)
    assert [event.last_event_id for event in events] == [ids[4], ids[5], later]
    client.close()


def test_stream_history_with_redis_down_is_a_503(tmp_path, secret_keys, publish_key, tokens,
                                                 channel):
    down = f"redis://127.0.0.1:{free_port()}/0"
    pool = StreamPool(tmp_path, pool_settings(down, secret_keys, publish_key, tmp_path / "var"))
    try:
        pool.start(connected=False)
        token, _ = tokens.issue([channel])
        target = f"/streams/history?token={quote(token)}&channel={channel}"
        answer = request(pool.port, "GET", target)
        assert (answer.status, answer.json()["error"]) == (503, "redis_unreachable")
        assert answer.headers["retry-after"] == "1"
    finally:
        pool.stop()
