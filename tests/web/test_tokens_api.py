"""POST /api/tokens: tokens that ChannelTokens verifies, and 400 for every bad request."""

from __future__ import annotations

import json
import secrets
import time
from datetime import datetime

import pytest

from eventgate.web.app import create_app


def _expires(body: dict) -> float:
    text = body["expires_at"]
    assert text.endswith("Z")
    return datetime.fromisoformat(text).timestamp()


def test_issued_token_verifies_with_its_grants_subject_and_expiry(client, auth, tokens):
    response = client.post(
        "/api/tokens", json={"channels": ["orders.42", "users.7.*"], "ttl": 120,
                             "subject": "user-7"},
        headers=auth,
    )

    assert response.status_code == 201
    assert response.headers["Cache-Control"] == "no-store"
    body = response.get_json()
    grant = tokens.verify(body["token"])
    assert grant.grants == ("orders.42", "users.7.*")
    assert grant.subject == "user-7"
    assert grant.expires_at == _expires(body)
    assert abs(grant.expires_at - (time.time() + 120)) < 5


def test_ttl_defaults_to_the_configured_one(make_config, auth, tokens):
    client = create_app(make_config(token_ttl_seconds=77)).test_client()

    response = client.post("/api/tokens", json={"channels": ["a"]}, headers=auth)

    assert response.status_code == 201
    grant = tokens.verify(response.get_json()["token"])
    assert grant.subject is None
    assert abs(grant.expires_at - (time.time() + 77)) < 5


BAD_REQUESTS = [
    ("missing channels", {"ttl": 5}, "invalid_request"),
    ("channels empty", {"channels": []}, "invalid_request"),
    ("channels a string", {"channels": "a"}, "invalid_request"),
    ("channel invalid", {"channels": ["a b"]}, "invalid_name"),
    ("channel not a string", {"channels": [7]}, "invalid_name"),
    ("bare star", {"channels": ["*"]}, "invalid_name"),
    ("ttl zero", {"channels": ["a"], "ttl": 0}, "invalid_request"),
    ("ttl over the maximum", {"channels": ["a"], "ttl": 86401}, "invalid_request"),
    ("ttl a string", {"channels": ["a"], "ttl": "60"}, "invalid_request"),
    ("ttl a float", {"channels": ["a"], "ttl": 1.5}, "invalid_request"),
    ("ttl a boolean", {"channels": ["a"], "ttl": True}, "invalid_request"),
    ("subject a number", {"channels": ["a"], "subject": 7}, "invalid_request"),
    ("subject empty", {"channels": ["a"], "subject": ""}, "invalid_request"),
    ("subject too long", {"channels": ["a"], "subject": "s" * 129}, "invalid_request"),
    ("subject lone surrogate", {"channels": ["a"], "subject": "\ud800"}, "invalid_request"),
    ("unknown field", {"channels": ["a"], "chanels": ["b"]}, "invalid_request"),
    ("an array", [{"channels": ["a"]}], "invalid_request"),
]


@pytest.mark.parametrize(
    ("body", "code"), [case[1:] for case in BAD_REQUESTS], ids=[case[0] for case in BAD_REQUESTS]
)
def test_bad_requests_are_400_json(client, auth, body, code):
    response = client.post("/api/tokens", data=json.dumps(body), content_type="application/json",
                           headers=auth)

    assert response.status_code == 400
    assert response.get_json()["error"] == code
    assert response.get_json()["message"]


def test_a_token_too_long_to_ever_verify_is_refused(make_config, auth):
    client = create_app(make_config(max_token_bytes=200)).test_client()
    # Random names: itsdangerous compresses payloads, so repetitive names would stay short.
    channels = [secrets.token_hex(8) for _ in range(30)]

    response = client.post("/api/tokens", json={"channels": channels}, headers=auth)

    assert response.status_code == 400
    assert "200 bytes" in response.get_json()["message"]
