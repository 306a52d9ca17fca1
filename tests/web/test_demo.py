"""The demo page, its token and its after-commit message endpoint."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from eventgate.shared.tokens import ChannelTokens
from eventgate.web.demo import DEMO_CHANNEL, DEMO_EVENT_TYPE, MAX_TEXT_CHARS

STATIC = Path(__file__).resolve().parents[2] / "web" / "static"


def test_page_is_html_with_no_referrer_and_only_same_origin_assets(client):
    response = client.get("/")

    assert response.status_code == 200
    assert response.mimetype == "text/html"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert "default-src 'self'" in response.headers["Content-Security-Policy"]
    html = response.get_data(as_text=True)
    assert not re.search(r"(src|href)=\"(https?:)?//", html)
    for asset in re.findall(r"(?:src|href)=\"(/static/[^\"]+)\"", html):
        assert client.get(asset).status_code == 200, asset


def test_scripts_reconnect_with_a_fresh_token_and_the_last_cursor():
    shared = (STATIC / "eventgate.js").read_text()
    demo = (STATIC / "demo.js").read_text()

    assert "new EventSource(url)" in shared
    assert '"token=";' in shared and "encodeURIComponent(token)" in shared
    assert '"&lastEventId=" + encodeURIComponent(cursor)' in shared
    assert "EventSource.CLOSED" in shared
    assert "navigator.locks.request" in shared and "new BroadcastChannel" in shared
    for name in ("eventgate.lost", "eventgate.token_expired"):
        assert f'"{name}"' in shared
    assert "EventGate.subscribe" in demo and '"demo.message"' in demo
    for script in (shared, demo):
        assert "innerHTML" not in script  # messages are text, never markup
        assert not re.search(r"https?://", script)


def test_shared_stream_script_is_served_with_the_page(client):
    html = client.get("/").get_data(as_text=True)
    scripts = re.findall(r"<script src=\"([^\"]+)\"", html)
    assert [Path(src).name for src in scripts] == ["eventgate.js", "demo.js"]  # in this order
    response = client.get(scripts[0])
    assert response.status_code == 200
    assert "javascript" in response.mimetype
    assert len(response.get_data()) <= 8 * 1024  # the source; ~1.9 KB once minified


@pytest.mark.parametrize("ttl", ["1", "300"])
def test_demo_token_lifetime_can_be_shortened(client, secret_keys, ttl):
    response = client.post(f"/demo/token?ttl={ttl}")

    assert response.status_code == 201
    grant = ChannelTokens(secret_keys).verify(response.get_json()["token"])
    assert grant.expires_at - time.time() <= int(ttl)


@pytest.mark.parametrize("ttl", ["0", "301", "-1", "1.5", "x", "", "9" * 5000, "\u0661"])
def test_bad_demo_token_lifetimes_are_400(client, ttl):
    response = client.post("/demo/token", query_string={"ttl": ttl})

    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_request"
    assert "ttl" in response.get_json()["message"]


def test_demo_token_grants_only_the_demo_channel_briefly(client, secret_keys):
    response = client.post("/demo/token")

    assert response.status_code == 201
    assert response.headers["Cache-Control"] == "no-store"
    grant = ChannelTokens(secret_keys).verify(response.get_json()["token"])
    assert grant.grants == (DEMO_CHANNEL,)
    assert grant.expires_at - time.time() <= 300


def test_message_is_published_to_the_demo_channel(client, read_log):
    before = len(read_log(DEMO_CHANNEL))

    response = client.post("/demo/messages", json={"text": "  hello, tabs  "})

    assert response.status_code == 201
    events = read_log(DEMO_CHANNEL)
    assert len(events) == before + 1
    event = events[-1]
    assert event.type == DEMO_EVENT_TYPE
    data = json.loads(event.data)
    assert data["text"] == "hello, tabs"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", data["at"])


@pytest.mark.parametrize(
    "body",
    [{}, {"text": ""}, {"text": "   "}, {"text": 7}, {"text": None}, {"text": ["a"]},
     {"text": "x" * (MAX_TEXT_CHARS + 1)}, {"text": "hi", "name": "me"}, ["hi"]],
    ids=["missing", "empty", "blank", "number", "null", "array", "too long", "unknown field",
         "not an object"],
)
def test_bad_messages_are_400_and_publish_nothing(client, read_log, body):
    before = len(read_log(DEMO_CHANNEL))

    response = client.post("/demo/messages", json=body)

    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_request"
    assert len(read_log(DEMO_CHANNEL)) == before


def test_message_must_be_json(client):
    response = client.post("/demo/messages", data={"text": "hi"})

    assert response.status_code == 400


def test_demo_tokens_carry_no_subject(client, secret_keys):
    # One shared subject would cap every visitor's tabs together at max_streams_per_subject.
    grant = ChannelTokens(secret_keys).verify(client.post("/demo/token").get_json()["token"])
    assert grant.subject is None


def test_demo_token_carries_the_channels_cursor_at_its_newest_event(client, read_log):
    # eventgate.js starts its first stream there: a stream that sees no event can still resume.
    client.post("/demo/messages", json={"text": "before the token"})
    newest = read_log(DEMO_CHANNEL)[-1].id

    answer = client.post("/demo/token").get_json()

    assert answer["cursor"] == newest
