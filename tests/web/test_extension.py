"""EventGate: after-commit publishing, direct publishing, tokens, and embedding in any Flask app."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

import pytest
from flask import Flask

from eventgate.shared.errors import InvalidName
from eventgate.shared.tokens import ChannelTokens, IssuedToken
from eventgate.web.app import create_app
from eventgate.web.extension import EventGate, current_eventgate


@pytest.mark.parametrize("outcome", ["ok", "redirect"])
def test_a_successful_request_publishes_its_events_in_order(make_app, channel, read_log, outcome):
    response = make_app(channel).test_client().post(f"/t/{outcome}")

    assert response.status_code < 400
    assert [(e.type, e.data) for e in read_log(channel)] == [
        ("first", '{"n":1}'), ("second", '{"n":2}')
    ]


@pytest.mark.parametrize("outcome", ["raise", "abort", "500", "400"])
def test_a_failed_request_publishes_nothing(make_app, channel, read_log, outcome):
    response = make_app(channel).test_client().post(f"/t/{outcome}")

    assert response.status_code >= 400
    assert response.is_json
    assert read_log(channel) == []


def test_bad_input_raises_at_once_and_nothing_is_published(make_app, channel, read_log):
    response = make_app(channel).test_client().post("/bad-name")

    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_name"
    assert read_log(channel) == []


def test_a_failed_after_request_publish_turns_success_into_503(make_app, channel,
                                                               dead_redis_url):
    response = make_app(channel, redis_url=dead_redis_url).test_client().post("/t/ok")

    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
    assert response.get_json()["error"] == "publish_failed"


def test_outside_a_request_publish_is_immediate(app, channel, read_log):
    gate = app.extensions["eventgate"]

    event_id = gate.publish(channel, {"a": 1}, "now")

    assert [e.id for e in read_log(channel)] == [event_id]


def test_publish_now_and_publish_many_return_ids(app, channel, read_log):
    gate = app.extensions["eventgate"]
    with app.test_request_context("/"):
        first = gate.publish_now(channel, 1)
        rest = gate.publish_many([gate.draft(channel, 2), gate.draft(channel, 3, "t")])

    assert [e.id for e in read_log(channel)] == [first, *rest]


def test_a_request_cannot_queue_more_than_a_batch(make_config, channel, read_log):
    app = create_app(make_config(max_batch_events=2))

    @app.post("/many")
    def many():
        for n in range(3):
            current_eventgate().publish(channel, n)
        return "ok"

    response = app.test_client().post("/many")

    assert response.status_code == 400
    assert read_log(channel) == []


def test_token_for_issues_a_verifiable_token(app, secret_keys):
    gate = app.extensions["eventgate"]

    issued = gate.token_for(["a", "b.*"], subject="user-1", ttl=60)
    token, expires_at = issued

    assert isinstance(issued, IssuedToken)
    grant = ChannelTokens(secret_keys).verify(token)
    assert grant.grants == ("a", "b.*")
    assert grant.subject == "user-1"
    assert expires_at.tzinfo is UTC
    assert expires_at == datetime.fromtimestamp(grant.expires_at, UTC)
    assert ChannelTokens(secret_keys).verify(gate.token_for(["c"]).token).subject is None
    with pytest.raises(InvalidName):
        gate.token_for(["bad name"])
    with pytest.raises(ValueError, match="ttl"):
        gate.token_for(["a"], ttl=0)


def test_token_for_follows_the_configs_token_settings(make_config, secret_keys):
    gate = EventGate(Flask("tokens"), make_config(token_ttl_seconds=77, max_token_bytes=200))

    _, expires_at = gate.token_for(["a"])

    assert abs((expires_at - datetime.now(UTC)).total_seconds() - 77) < 5
    with pytest.raises(ValueError, match="200 bytes"):
        gate.token_for([secrets.token_hex(8) for _ in range(30)])


def test_embeds_in_a_plain_flask_app_with_init_app(make_config, channel, read_log):
    gate = EventGate(config=make_config())
    app = Flask("someone_elses_app")
    gate.init_app(app)

    @app.post("/orders")
    def create_order():
        gate.publish(channel, {"order": 1}, "order.created")
        return {"ok": True}, 201

    assert app.extensions["eventgate"] is gate
    assert app.test_client().post("/orders").status_code == 201
    assert [e.type for e in read_log(channel)] == ["order.created"]


def test_one_eventgate_serves_one_app(make_config):
    one = Flask("one")
    gate = EventGate(one, make_config())

    gate.init_app(one)  # idempotent for its own app
    with pytest.raises(RuntimeError, match="one app"):
        gate.init_app(Flask("two"))


def test_an_unbound_eventgate_says_so():
    with pytest.raises(RuntimeError, match="init_app"):
        EventGate().publisher  # noqa: B018
