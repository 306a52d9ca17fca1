"""POST /api/events: single and batch publishes stored in order, and every refusal as JSON."""

from __future__ import annotations

import json
import time

import pytest

from eventgate.shared.events import id_key
from eventgate.web.app import create_app


def test_publish_one_event_stores_it_before_answering(client, auth, channel, read_log):
    response = client.post(
        "/api/events", json={"channel": channel, "type": "order.updated", "data": {"n": 1}},
        headers=auth,
    )

    assert response.status_code == 201
    event_id = response.get_json()["id"]
    [event] = read_log(channel)
    assert (event.id, event.type, json.loads(event.data)) == (event_id, "order.updated", {"n": 1})


def test_type_defaults_to_message_and_data_to_null(client, auth, channel, read_log):
    response = client.post("/api/events", json={"channel": channel}, headers=auth)

    assert response.status_code == 201
    [event] = read_log(channel)
    assert (event.type, event.data) == ("message", "null")


def test_batch_answers_ids_in_order_and_stores_in_order(client, auth, channel, read_log):
    other = channel + ".other"
    batch = [
        {"channel": channel, "data": 1},
        {"channel": other, "type": "t", "data": "x"},
        {"channel": channel, "data": 2},
        {"channel": channel, "data": 3},
    ]

    response = client.post("/api/events", json=batch, headers=auth)

    assert response.status_code == 201
    ids = response.get_json()["ids"]
    assert len(ids) == 4
    mine = read_log(channel)
    assert [e.id for e in mine] == [ids[0], ids[2], ids[3]]
    assert [e.data for e in mine] == ["1", "2", "3"]
    assert [e.id for e in read_log(other)] == [ids[1]]
    assert id_key(ids[0]) < id_key(ids[2]) < id_key(ids[3])
    # Each stored event names its predecessor, so a reader can prove nothing is missing.
    assert [e.prev for e in mine[1:]] == [ids[0], ids[2]]


def _post_raw(client, auth, body: str | bytes, content_type: str = "application/json"):
    return client.post("/api/events", data=body, content_type=content_type, headers=auth)


BAD_BODIES = [
    # (what, body, content type, error code)
    ("text/plain content type", '{"channel": "a"}', "text/plain", "invalid_request"),
    ("form-encoded body", "channel=a", "application/x-www-form-urlencoded", "invalid_request"),
    ("no body", "", "application/json", "invalid_json"),
    ("malformed JSON", '{"channel": ', "application/json", "invalid_json"),
    ("not UTF-8", b'{"channel": "\xff"}', "application/json", "invalid_json"),
    ("nested too deeply", "[" * 100_000, "application/json", "invalid_json"),
    ("a number", "42", "application/json", "invalid_request"),
    ("a string", '"a"', "application/json", "invalid_request"),
    ("null", "null", "application/json", "invalid_request"),
    ("empty batch", "[]", "application/json", "invalid_request"),
    ("batch of non-objects", '["a"]', "application/json", "invalid_request"),
    ("missing channel", '{"type": "t"}', "application/json", "invalid_request"),
    ("unknown field", '{"channel": "a", "dat": 1}', "application/json", "invalid_request"),
    ("unknown field in batch", '[{"channel": "a"}, {"channel": "a", "x": 1}]',
     "application/json", "invalid_request"),
    ("channel not a string", '{"channel": 42}', "application/json", "invalid_name"),
    ("channel empty", '{"channel": ""}', "application/json", "invalid_name"),
    ("channel with space", '{"channel": "a b"}', "application/json", "invalid_name"),
    ("channel with LF", '{"channel": "a\\nb"}', "application/json", "invalid_name"),
    ("channel with CR", '{"channel": "a\\rb"}', "application/json", "invalid_name"),
    ("channel too long", json.dumps({"channel": "a" * 129}), "application/json", "invalid_name"),
    ("channel glob", '{"channel": "a.*"}', "application/json", "invalid_name"),
    ("type with LF", '{"channel": "a", "type": "x\\ny"}', "application/json", "invalid_name"),
    ("type reserved", '{"channel": "a", "type": "eventgate.lost"}', "application/json",
     "invalid_name"),
    ("type null", '{"channel": "a", "type": null}', "application/json", "invalid_name"),
    ("data NaN", '{"channel": "a", "data": NaN}', "application/json", "invalid_event"),
    ("data lone surrogate", '{"channel": "a", "data": "\\ud800"}', "application/json",
     "invalid_event"),
]


@pytest.mark.parametrize(
    ("body", "content_type", "code"),
    [case[1:] for case in BAD_BODIES],
    ids=[case[0] for case in BAD_BODIES],
)
def test_bad_bodies_are_refused_with_400_json(client, auth, body, content_type, code):
    response = _post_raw(client, auth, body, content_type)

    assert response.status_code == 400
    assert response.get_json()["error"] == code
    assert response.get_json()["message"]


def test_a_bad_event_in_a_batch_names_it_and_publishes_nothing(client, auth, channel, read_log):
    batch = [{"channel": channel, "data": 1}, {"channel": "no way"}]

    response = client.post("/api/events", json=batch, headers=auth)

    assert response.status_code == 400
    assert response.get_json()["message"].startswith("event 1: ")
    assert read_log(channel) == []


def test_batch_larger_than_the_limit_is_refused(make_config, auth, channel, read_log):
    client = create_app(make_config(max_batch_events=3)).test_client()

    response = client.post("/api/events", json=[{"channel": channel}] * 4, headers=auth)

    assert response.status_code == 400
    assert "at most 3" in response.get_json()["message"]
    assert read_log(channel) == []


def test_data_larger_than_max_event_bytes_is_refused(make_config, auth, channel, read_log):
    client = create_app(make_config(max_event_bytes=100)).test_client()

    response = client.post("/api/events", json={"channel": channel, "data": "x" * 200},
                           headers=auth)

    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_event"
    assert read_log(channel) == []


def test_body_over_the_request_limit_is_413_json(make_config, auth, channel):
    app = create_app(make_config(max_event_bytes=1000, max_batch_events=2))
    limit = app.config["MAX_CONTENT_LENGTH"]

    response = app.test_client().post(
        "/api/events", json={"channel": channel, "data": "x" * (limit + 1)}, headers=auth
    )

    assert response.status_code == 413
    assert response.get_json()["error"] == "content_too_large"
    assert str(limit) in response.get_json()["message"]


def test_redis_down_is_503_with_retry_after_within_a_second(make_config, auth, channel,
                                                            dead_redis_url):
    client = create_app(make_config(redis_url=dead_redis_url)).test_client()

    started = time.monotonic()
    response = client.post("/api/events", json={"channel": channel}, headers=auth)
    elapsed = time.monotonic() - started

    assert elapsed < 1.0
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
    body = response.get_json()
    assert body["error"] == "publish_failed"
    assert "nothing was published" in body["message"]
    assert "127.0.0.1" not in body["message"]  # no connection details leak


def test_batch_redis_down_is_503_too(make_config, auth, channel, dead_redis_url):
    client = create_app(make_config(redis_url=dead_redis_url)).test_client()

    response = client.post("/api/events", json=[{"channel": channel}] * 2, headers=auth)

    assert response.status_code == 503
    assert response.get_json()["error"] == "publish_failed"
