"""POST /api/revocations and ``gate.revoke``: the revocation stored for the longest token lifetime
and announced on the control channel; 400 for every bad body, 403 for a key restricted to
channels, 503 when Redis does not take it."""

from __future__ import annotations

import json
import secrets
import time
from datetime import datetime

import pytest

from eventgate.shared import keys
from eventgate.web.app import create_app
from eventgate.web.extension import current_eventgate


def test_a_revocation_is_stored_for_the_longest_token_lifetime_and_announced(
    make_config, auth, redis_server
):
    client = create_app(make_config(token_max_ttl_seconds=3600)).test_client()
    subject = f"user-{secrets.token_hex(4)}"
    control = redis_server.client().pubsub()
    control.subscribe(keys.CONTROL_CHANNEL)
    assert control.get_message(timeout=2)["type"] == "subscribe"

    response = client.post("/api/revocations", json={"subject": subject}, headers=auth)

    assert response.status_code == 201
    body = response.get_json()
    assert body["subject"] == subject and body["revoked_at"].endswith("Z")
    revoked_at = datetime.fromisoformat(body["revoked_at"]).timestamp()
    assert abs(revoked_at - time.time()) < 5
    stored = float(redis_server.client().get(keys.revoked_key(subject)))
    assert int(stored) == revoked_at  # the answer is the stored time, whole seconds
    assert 3599 <= redis_server.client().ttl(keys.revoked_key(subject)) <= 3600
    message = control.get_message(timeout=2)
    assert json.loads(message["data"]) == {"op": "revoke", "subject": subject,
                                           "revoked_at": stored}
    control.close()


def test_gate_revoke_from_app_code(app, redis_server):
    subject = f"user-{secrets.token_hex(4)}"
    with app.app_context():
        revoked_at = current_eventgate().revoke(subject)
    assert revoked_at.tzinfo is not None and abs(revoked_at.timestamp() - time.time()) < 5
    stored = float(redis_server.client().get(keys.revoked_key(subject)))
    assert abs(stored - revoked_at.timestamp()) < 1e-5
    with app.app_context(), pytest.raises(ValueError):
        current_eventgate().revoke("")


BAD_BODIES = [
    ("subject missing", {}, "invalid_request"),
    ("subject a number", {"subject": 7}, "invalid_request"),
    ("subject empty", {"subject": ""}, "invalid_request"),
    ("subject too long", {"subject": "s" * 129}, "invalid_request"),
    ("subject lone surrogate", {"subject": "\ud800"}, "invalid_request"),
    ("unknown field", {"subject": "a", "channels": ["b"]}, "invalid_request"),
    ("an array", [{"subject": "a"}], "invalid_request"),
    ("not JSON", "{", "invalid_json"),
]


@pytest.mark.parametrize(
    ("body", "code"), [case[1:] for case in BAD_BODIES], ids=[case[0] for case in BAD_BODIES]
)
def test_bad_bodies_are_400_json(client, auth, body, code):
    data = body if isinstance(body, str) else json.dumps(body)
    response = client.post("/api/revocations", data=data, content_type="application/json",
                           headers=auth)
    assert response.status_code == 400
    assert response.get_json()["error"] == code and response.get_json()["message"]


def test_without_a_key_401_with_a_channel_restricted_key_403(make_config, redis_server):
    client = create_app(make_config(publish_keys=("scoped-key-0123456789:orders.*",))).test_client()
    subject = f"user-{secrets.token_hex(4)}"
    assert client.post("/api/revocations", json={"subject": subject}).status_code == 401
    response = client.post("/api/revocations", json={"subject": subject},
                           headers={"Authorization": "Bearer scoped-key-0123456789"})
    assert response.status_code == 403 and response.get_json()["error"] == "forbidden"
    assert not redis_server.client().exists(keys.revoked_key(subject))


def test_redis_down_is_503_json(make_config, auth, dead_redis_url):
    client = create_app(make_config(redis_url=dead_redis_url)).test_client()
    response = client.post("/api/revocations", json={"subject": "user-7"}, headers=auth)
    assert response.status_code == 503
    assert response.get_json()["error"] == "redis_unreachable"
    assert response.headers["Retry-After"] == "1"
