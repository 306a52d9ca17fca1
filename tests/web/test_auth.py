"""The publisher key: required on every /api route, compared against every configured key."""

from __future__ import annotations

import pytest

from eventgate.web.app import create_app
from eventgate.web.auth import key_matches


@pytest.mark.parametrize("path", ["/api/events", "/api/tokens"])
@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer ", "Bearer wrong-key", "Basic dXNlcjpwYXNz", "bearer-ish"],
    ids=["missing", "empty", "scheme only", "blank key", "wrong key", "basic", "garbage"],
)
def test_without_a_valid_key_the_api_answers_401_json(client, path, authorization):
    headers = {} if authorization is None else {"Authorization": authorization}

    response = client.post(path, json={"channel": "a", "channels": ["a"]}, headers=headers)

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert response.get_json()["error"] == "unauthorized"
    assert response.get_json()["message"]


def test_a_wrong_key_is_never_echoed(client, publish_key):
    wrong = publish_key[:-4] + "XXXX"

    response = client.post("/api/events", json={"channel": "a"},
                           headers={"Authorization": f"Bearer {wrong}"})

    assert response.status_code == 401
    assert wrong not in response.get_data(as_text=True)
    assert publish_key not in response.get_data(as_text=True)


def test_the_key_is_checked_before_the_body_is_read(client):
    response = client.post("/api/events", data="not json", content_type="text/plain")

    assert response.status_code == 401


def test_scheme_is_case_insensitive(client, publish_key, channel):
    response = client.post("/api/events", json={"channel": channel},
                           headers={"Authorization": f"bearer {publish_key}"})

    assert response.status_code == 201


def test_every_configured_key_is_accepted(make_config, channel):
    client = create_app(make_config(publish_keys=("old-key", "new-key"))).test_client()

    for key in ("old-key", "new-key"):
        response = client.post("/api/events", json={"channel": channel},
                               headers={"Authorization": f"Bearer {key}"})
        assert response.status_code == 201, key


def test_key_matches_compares_whole_keys():
    assert key_matches("abc", ["x", "abc"])
    assert not key_matches("ab", ["abc"])
    assert not key_matches("abcd", ["abc"])
    assert not key_matches("é", ["e"])  # non-ASCII input does not crash compare_digest
    assert not key_matches("abc", [])
