"""The publish fast path (web/api/fastpath.py): a publish that succeeds is answered without Flask's
request handling, byte for byte as the view answers it; anything else reaches Flask unchanged,
and a publish Redis did not confirm is answered once, never handed on to publish again."""

from __future__ import annotations

import json
import logging

import pytest

from eventgate.shared.errors import PublishError
from eventgate.shared.logformat import current_request_id
from eventgate.web.app import create_app


@pytest.mark.parametrize("batch", [False, True])
def test_a_publish_is_answered_without_flask_exactly_as_the_view_answers(
    client, view_client, auth, channel, flask_calls, read_log, batch
):
    event = {"channel": channel, "type": "t", "data": {"n": 1}}
    body = [event, event] if batch else event

    fast = client.post("/api/events", json=body, headers=auth)
    assert flask_calls == []
    slow = view_client.post("/api/events", json=body, headers=auth)

    assert fast.status == slow.status == "201 CREATED"
    assert sorted(fast.headers.items()) == sorted(slow.headers.items())
    fast_ids, slow_ids = json.loads(fast.data), json.loads(slow.data)
    key = "ids" if batch else "id"
    assert list(fast_ids) == list(slow_ids) == [key]
    fast_ids, slow_ids = fast_ids[key], slow_ids[key]
    if not batch:
        fast_ids, slow_ids = [fast_ids], [slow_ids]
    assert [e.id for e in read_log(channel)] == fast_ids + slow_ids

    def masked(data: bytes, ids: list[str]) -> bytes:
        for event_id in ids:
            data = data.replace(event_id.encode(), b"ID")
        return data

    assert masked(fast.data, fast_ids) == masked(slow.data, slow_ids)


@pytest.mark.parametrize(
    ("headers", "body", "content_type", "status"),
    [
        ({}, b'{"channel": "a"}', "application/json", 401),
        ({"Authorization": "Bearer wrong"}, b'{"channel": "a"}', "application/json", 401),
        (None, b'{"channel": "a"}', "text/plain", 400),
        (None, b'{"channel": "a"', "application/json", 400),
        (None, b"", "application/json", 400),
        (None, b'{"channel": "a", "dat": 1}', "application/json", 400),
        (None, b'{"channel": "no spaces"}', "application/json", 400),
        (None, b"[]", "application/json", 400),
        (None, b"3", "application/json", 400),
    ],
)
def test_every_refusal_is_flasks_own(
    client, view_client, auth, flask_calls, headers, body, content_type, status
):
    headers = auth if headers is None else headers
    fast = client.post("/api/events", data=body, content_type=content_type, headers=headers)
    slow = view_client.post("/api/events", data=body, content_type=content_type,
                            headers=headers)
    assert flask_calls == ["/api/events"]
    assert (fast.status_code, fast.get_json()) == (slow.status_code, slow.get_json())
    assert fast.status_code == status


def test_another_json_content_type_goes_through_flask(client, auth, channel, flask_calls):
    response = client.post("/api/events", data=json.dumps({"channel": channel}),
                           content_type="application/vnd.x+json", headers=auth)
    assert response.status_code == 201
    assert flask_calls == ["/api/events"]


def test_a_channel_outside_the_keys_scope_is_flasks_403(make_config, channel):
    app = create_app(make_config(publish_keys=("scoped-key-0123456789:orders.*",)))
    response = app.test_client().post(
        "/api/events", json={"channel": channel},
        headers={"Authorization": "Bearer scoped-key-0123456789"},
    )
    assert response.status_code == 403
    assert response.get_json()["error"] == "channel_forbidden"


def test_a_failed_publish_is_answered_once_and_logged_with_the_request_id(
    app, client, auth, channel, monkeypatch, caplog, flask_calls
):
    calls = []

    def fail(drafts, idempotency_key=None):  # noqa: ANN001
        calls.append(list(drafts))
        raise PublishError("Redis did not store the event (TimeoutError); nothing was published.")

    monkeypatch.setattr(app.extensions["eventgate"].publisher, "store", fail)
    with caplog.at_level(logging.WARNING):
        response = client.post("/api/events", json={"channel": channel},
                               headers={**auth, "X-Request-ID": "req-42"})

    assert len(calls) == 1  # never handed to Flask to publish again
    assert flask_calls == []
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
    assert response.get_json()["error"] == "publish_failed"
    [record] = [r for r in caplog.records if "publish failed" in r.getMessage()]
    assert current_request_id() == "req-42"
    assert record.levelname == "WARNING"


def test_other_routes_and_methods_are_flasks(client, auth, flask_calls):
    assert client.get("/api/events", headers=auth).status_code == 405
    assert client.get("/healthz").status_code in (200, 503)
    assert flask_calls == ["/api/events", "/healthz"]
