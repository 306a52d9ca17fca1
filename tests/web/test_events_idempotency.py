"""``Idempotency-Key`` on ``POST /api/events`` and durable publish, through the publish fast path
(web/api/fastpath.py) and through the Flask view alone: both answer a repeat 201 with the first
ids, other events under a used key 409, a malformed key 400, too few replicas 503."""

from __future__ import annotations

import pytest

PATHS = ["fast", "view"]


def with_key(auth: dict[str, str], key: str) -> dict[str, str]:
    return {**auth, "Idempotency-Key": key}


@pytest.mark.parametrize("batch", [False, True], ids=["single", "batch"])
@pytest.mark.parametrize("path", PATHS)
def test_a_repeat_answers_201_with_the_first_ids_and_stores_nothing(
    client, view_client, auth, channel, flask_calls, read_log, path, batch
):
    http = client if path == "fast" else view_client
    event = {"channel": channel, "type": "t", "data": {"n": 1}}
    body = [event, {**event, "data": {"n": 2}}] if batch else event

    first = http.post("/api/events", json=body, headers=with_key(auth, channel))
    again = http.post("/api/events", json=body, headers=with_key(auth, channel))

    assert (first.status_code, again.status_code) == (201, 201)
    assert again.get_json() == first.get_json()
    assert list(first.get_json()) == (["ids"] if batch else ["id"])
    assert len(read_log(channel)) == (2 if batch else 1)
    if path == "fast":
        assert flask_calls == []  # answered by the fast path


def test_a_repeat_through_the_other_path_answers_the_same_id(
    client, view_client, auth, channel, read_log
):
    body = {"channel": channel, "data": "once"}
    first = client.post("/api/events", json=body, headers=with_key(auth, channel))
    again = view_client.post("/api/events", json=body, headers=with_key(auth, channel))
    assert again.status_code == 201
    assert again.get_json() == first.get_json()
    assert [event.id for event in read_log(channel)] == [first.get_json()["id"]]


@pytest.mark.parametrize("path", PATHS)
def test_other_events_under_a_used_key_answer_409(
    client, view_client, auth, channel, flask_calls, read_log, path
):
    http = client if path == "fast" else view_client
    http.post("/api/events", json={"channel": channel, "data": 1}, headers=with_key(auth, channel))
    reused = http.post("/api/events", json={"channel": channel, "data": 2},
                       headers=with_key(auth, channel))

    assert reused.status_code == 409
    answer = reused.get_json()
    assert answer["error"] == "idempotency_key_reused"
    assert channel in answer["message"] and answer["message"].endswith(".")
    assert [event.data for event in read_log(channel)] == ["1"]
    if path == "fast":
        assert flask_calls == []  # answered by the fast path, the script not run again


@pytest.mark.parametrize("key", ["", "k" * 129, "two words", "a/b", "a,b", "caf\u00e9"])
@pytest.mark.parametrize("path", PATHS)
def test_a_malformed_key_is_a_400_and_nothing_is_stored(
    client, view_client, auth, channel, flask_calls, read_log, path, key
):
    http = client if path == "fast" else view_client
    response = http.post("/api/events", json={"channel": channel}, headers=with_key(auth, key))

    assert response.status_code == 400
    answer = response.get_json()
    assert answer["error"] == "invalid_request"
    assert answer["message"].startswith("idempotency key ")
    assert read_log(channel) == []
    if path == "fast":
        assert flask_calls == ["/api/events"]  # handed to Flask untouched


@pytest.mark.parametrize("path", PATHS)
def test_too_few_replicas_answer_503_not_durable(publish_clients, auth, channel, read_log, path):
    # The session's redis has no replica: one required is one too many.
    http = publish_clients(durable_replicas=1)[path]
    response = http.post("/api/events", json={"channel": channel},
                         headers=with_key(auth, channel))

    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
    answer = response.get_json()
    assert answer["error"] == "not_durable"
    assert "same idempotency key" in answer["message"]
    assert len(read_log(channel)) == 1  # stored on the primary: it may survive

    # The retry the 503 invites stores nothing again.
    retry = http.post("/api/events", json={"channel": channel}, headers=with_key(auth, channel))
    assert retry.status_code == 503
    assert len(read_log(channel)) == 1
