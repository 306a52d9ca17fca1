"""Hypothesis fuzz of the publish API and the stream's query: never a 5xx, every refusal a JSON
``{"error", "message"}``, every accepted event stored exactly as sent.

The bulk runs on the real web app (Flask test client) against the session's real Redis; a smaller
run goes through nginx on the deployed stack, where the servers' own parsers see the bytes too.
"""

from __future__ import annotations

import http.client
import json
import math
import secrets

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from eventgate.shared import keys
from eventgate.shared.events import Event
from eventgate.shared.names import CONTROL_PREFIX

# Characters that break line-based protocols or fool readers: CR, LF, NUL, Unicode line breaks,
# bidi and zero-width marks, a homoglyph, a BOM, quotes and glob characters.
HOSTILE = ["\r", "\n", "\r\n", "\0", "\u2028", "\u2029", "\x85", "\u200b", "\u200d", "\u200f",
           "\u202e", "\ufeff", "\u043e", "\uff11", '"', "\\", "*", "?", "[", " ", ":", "."]
TEXT = st.lists(
    st.one_of(st.characters(exclude_categories=("Cs",)), st.sampled_from(HOSTILE)), max_size=20
).map("".join)
NAME = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,20}", fullmatch=True)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | TEXT,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(TEXT, children, max_size=4),
    max_leaves=12,
)


def events(prefix: str):
    """Event objects, often valid (so that acceptance is fuzzed too), with hostile fields."""
    valid = NAME.map(lambda n: f"{prefix}.{n}")
    channel = st.one_of(valid, valid, valid, TEXT, JSON)
    event_type = st.one_of(NAME, NAME, TEXT, st.just(CONTROL_PREFIX + "lost"), JSON)
    plain = st.fixed_dictionaries({"channel": channel}, optional={"type": event_type, "data": JSON})
    odd = st.fixed_dictionaries({"channel": channel}, optional={"extra": JSON, "data": JSON})
    return st.one_of(plain, plain, plain, odd, st.sampled_from(RESTRICTED_CHANNELS).map(
        lambda c: {"channel": c}))


def encoded(value: object) -> bytes:
    return json.dumps(value).encode("utf-8", "surrogatepass")


def bodies(prefix: str):
    one = events(prefix)
    return st.one_of(
        one.map(encoded), one.map(encoded), one.map(encoded),
        st.lists(one, max_size=4).map(encoded),
        JSON.map(encoded),
        st.binary(max_size=200),
        TEXT.map(lambda t: t.encode("utf-8", "surrogatepass")),
    )


#: Inside and just outside the restricted key's scope.
RESTRICTED_CHANNELS = ["sec.orders.1", "sec.orders.x.y", "sec.users.7", "sec.users.7.a",
                       "sec.users.70", "sec.orders", "sec.other"]
CONTENT_TYPES = st.sampled_from(
    ["application/json"] * 6 + [
        "application/json; charset=utf-8", "text/plain", "", "application/xml",
        "application/x-www-form-urlencoded", "application/json\r\nX: y"]
)


def check_answer(status: int, content_type: str, body: bytes, secrets_sent: list[str]) -> dict:
    assert status < 500, (status, body[:300])
    assert content_type.startswith("application/json"), (status, content_type, body[:300])
    payload = json.loads(body)
    text = body.decode("utf-8", "replace")
    for secret in secrets_sent:
        assert secret not in text
    if status >= 400:
        assert isinstance(payload["error"], str) and payload["error"]
        assert isinstance(payload["message"], str) and payload["message"]
    return payload


def stored_event(redis_client, channel: str, event_id: str) -> Event:
    [(entry_id, fields)] = redis_client.xrange(keys.log_key(channel), event_id, event_id)
    return Event.from_entry(channel, entry_id, fields)


def same_json(a: object, b: object) -> bool:
    """Equality that treats NaN as equal to itself (it never gets stored, but may be compared)."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


# -- the web app itself, on real Redis ------------------------------------------------------------


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_publish_api_fuzz(fuzz_app, redis_server, data):
    app, key, restricted = fuzz_app
    prefix = f"fuzz.{secrets.token_hex(3)}"
    body = data.draw(bodies(prefix), label="body")
    content_type = data.draw(CONTENT_TYPES, label="content type")
    which = data.draw(st.sampled_from(["key", "key", "restricted", "restricted", "garbage",
                                       "none"]), label="auth")
    headers = {"Content-Type": content_type} if content_type else {}
    sent = {"key": key, "restricted": restricted, "garbage": "x" + key[1:], "none": ""}[which]
    if sent:
        headers["Authorization"] = f"Bearer {sent}"
    try:
        response = app.test_client().post("/api/events", data=body, headers=headers)
    except ValueError:
        return  # werkzeug refuses to even build a request with CR/LF in a header: not sent
    payload = check_answer(response.status_code, response.content_type, response.data,
                           [key, restricted])
    event(f"status {response.status_code}")
    if which in ("garbage", "none"):
        assert response.status_code == 401
    if response.status_code != 201:
        return
    # Accepted: every event is stored exactly as it was sent, in its channel, with a valid type.
    sent_body = json.loads(body)
    items = sent_body if isinstance(sent_body, list) else [sent_body]
    ids = payload["ids"] if isinstance(sent_body, list) else [payload["id"]]
    assert len(ids) == len(items)
    client = redis_server.client()
    for item, event_id in zip(items, ids, strict=True):
        stored = stored_event(client, item["channel"], event_id)
        assert stored.type == item.get("type", "message")
        assert same_json(json.loads(stored.data), item.get("data"))
        assert not any(ch in stored.data for ch in "\r\n\0")
        if which == "restricted":
            assert item["channel"] == "sec.users.7" or item["channel"].startswith("sec.orders.")


# -- through nginx, on the deployed stack ----------------------------------------------------------


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_publish_api_fuzz_through_nginx(secured, data):
    prefix = f"fuzz.{secrets.token_hex(3)}"
    body = data.draw(bodies(prefix), label="body")
    content_type = data.draw(CONTENT_TYPES.filter(lambda t: "\r" not in t), label="content type")
    key = data.draw(st.sampled_from([secured.stack.publish_key, secured.restricted_key]))
    conn = http.client.HTTPConnection("127.0.0.1", secured.port, timeout=10)
    try:
        conn.request("POST", "/api/events", body=body,
                     headers={"Authorization": f"Bearer {key}", "Content-Type": content_type})
        response = conn.getresponse()
        answer = response.read()
    finally:
        conn.close()
    check_answer(response.status, response.getheader("Content-Type", ""), answer,
                 [secured.stack.publish_key, secured.restricted_key])
    event(f"status {response.status}")


QUERY_VALUE = st.one_of(TEXT, NAME, st.binary(max_size=30).map(lambda b: b.decode("latin-1")))


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_stream_query_fuzz_through_nginx(secured, secret_register, data):
    from urllib.parse import quote

    prefix = f"fuzz.{secrets.token_hex(3)}"
    grants = data.draw(st.lists(NAME.map(lambda n: f"{prefix}.{n}"), min_size=1, max_size=3)
                       .map(lambda g: g + [f"{prefix}.p.*"]))
    token, _ = secured.tokens.issue(grants)
    secret_register.add(token)
    channels = data.draw(st.lists(st.one_of(st.sampled_from(grants), QUERY_VALUE), max_size=4))
    cursor = data.draw(st.one_of(st.none(), QUERY_VALUE, NAME.map(lambda n: f"{n}=1-0")))
    path = f"/streams?token={token}" + "".join(f"&channel={quote(c, safe='')}" for c in channels)
    if cursor is not None:
        path += f"&lastEventId={quote(cursor, safe='')}"
    conn = http.client.HTTPConnection("127.0.0.1", secured.port, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        content_type = response.getheader("Content-Type", "")
        event(f"status {response.status}")
        if response.status == 200:
            assert content_type.startswith("text/event-stream")
            return
        answer = response.read()
    finally:
        conn.close()
    assert response.status in (400, 403), (response.status, answer[:300])
    check_answer(response.status, content_type, answer, [token])
