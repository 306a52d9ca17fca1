"""The catalogue of hostile requests to the publish and token APIs, through nginx on the stack,
each with the answer it must get (the rules every answer is held to are in
tests/security/catalogue.py; stream requests are in test_catalogue_streams.py)."""

from __future__ import annotations

import pytest

from tests.security.catalogue import Row, event, get, publish, run


def keyed(request: tuple, key: str) -> tuple:
    """``request`` (as ``publish`` builds it) with an ``Idempotency-Key`` header."""
    method, target, headers, body = request
    return method, target, {**headers, "Idempotency-Key": key}, body


PUBLISH_ROWS = [
    Row("no Authorization", lambda c: ("POST", "/api/events",
                                       {"Content-Type": "application/json"}, b"{}"),
        401, "unauthorized"),
    Row("Basic scheme", lambda c: ("POST", "/api/events",
                                   {"Authorization": "Basic " + c.key(c.secured.stack.publish_key),
                                    "Content-Type": "application/json"}, b"{}"),
        401, "unauthorized"),
    Row("wrong key", lambda c: publish(c, event(c), key="not-the-key-" * 4), 401, "unauthorized"),
    Row("the key plus one character",
        lambda c: publish(c, event(c), key=c.secured.stack.publish_key + "x"), 401, "unauthorized"),
    Row("the key minus its last character",
        lambda c: publish(c, event(c), key=c.secured.stack.publish_key[:-1]), 401,
        "unauthorized"),
    Row("a restricted key's whole entry used as the key",
        lambda c: publish(c, event(c), key=f"{c.secured.restricted_key}:sec.orders.*"),
        401, "unauthorized"),
    Row("the signing secret used as a publisher key",
        lambda c: publish(c, event(c), key=c.secured.stack.secret_key), 401, "unauthorized"),
    Row("valid event (control)", lambda c: publish(c, event(c, data={"ok": 1})), 201),
    Row("restricted key inside its scope (accepted)",
        lambda c: publish(c, {"channel": f"sec.orders.{c.base[4:]}"}, key=c.secured.restricted_key),
        201),
    Row("restricted key on its exact channel (accepted)",
        lambda c: publish(c, {"channel": "sec.users.7"}, key=c.secured.restricted_key), 201),
    Row("restricted key outside its scope",
        lambda c: publish(c, event(c), key=c.secured.restricted_key), 403, "channel_forbidden"),
    Row("restricted key under its exact channel",
        lambda c: publish(c, {"channel": "sec.users.7.x"}, key=c.secured.restricted_key),
        403, "channel_forbidden"),
    Row("restricted key, one event of a batch outside",
        lambda c: publish(c, [{"channel": "sec.users.7"}, {"channel": "sec.users.8"}],
                          key=c.secured.restricted_key), 403, "channel_forbidden"),
    Row("channel with CR", lambda c: publish(c, event(c, channel=f"{c.base}\rid: 1")),
        400, "invalid_name"),
    Row("channel with U+2028", lambda c: publish(c, event(c, channel=f"{c.base}.a\u2028")),
        400, "invalid_name"),
    Row("channel with a right-to-left mark",
        lambda c: publish(c, event(c, channel=f"{c.base}.\u200fa")), 400, "invalid_name"),
    Row("channel with a Cyrillic homoglyph",
        lambda c: publish(c, event(c, channel=f"{c.base}.\u043e")), 400, "invalid_name"),
    Row("channel not a string", lambda c: publish(c, event(c, channel=["a"])),
        400, "invalid_name"),
    Row("type with LF", lambda c: publish(c, event(c, type="t\nid: 9")), 400, "invalid_name"),
    Row("type with a bare CR", lambda c: publish(c, event(c, type="t\rdata: x")),
        400, "invalid_name"),
    Row("type with NUL", lambda c: publish(c, event(c, type="t\x00")), 400, "invalid_name"),
    Row("type with a zero-width joiner", lambda c: publish(c, event(c, type="t\u200d")),
        400, "invalid_name"),
    Row("type with U+2029", lambda c: publish(c, event(c, type="t\u2029")), 400, "invalid_name"),
    Row("type reserved for control events",
        lambda c: publish(c, event(c, type="eventgate.token_expired")), 400, "invalid_name"),
    Row("type of 65 characters", lambda c: publish(c, event(c, type="t" * 65)),
        400, "invalid_name"),
    Row("data NaN", lambda c: publish(c, b'{"channel": "%s.a", "data": NaN}' % c.base.encode()),
        400, "invalid_event"),
    Row("data with a lone surrogate",
        lambda c: publish(c, b'{"channel": "%s.a", "data": "\\ud800"}' % c.base.encode()),
        400, "invalid_event"),
    Row("data over the event size limit",
        lambda c: publish(c, event(c, data="x" * 70000)), 400, "invalid_event"),
    Row("unknown field", lambda c: publish(c, event(c, dat=1)), 400, "invalid_request"),
    Row("empty batch", lambda c: publish(c, []), 400, "invalid_request"),
    Row("a number as the body", lambda c: publish(c, 42), 400, "invalid_request"),
    Row("empty body", lambda c: publish(c, b""), 400, "invalid_json"),
    Row("not JSON", lambda c: publish(c, b"{channel: a}"), 400, "invalid_json"),
    Row("invalid UTF-8", lambda c: publish(c, b'{"channel": "\xff"}'), 400, "invalid_json"),
    Row("nested 100000 deep", lambda c: publish(c, b"[" * 100000 + b"]" * 100000),
        400, "invalid_json"),
    Row("Idempotency-Key (accepted)", lambda c: keyed(publish(c, event(c)), c.base), 201),
    Row("empty Idempotency-Key", lambda c: keyed(publish(c, event(c)), ""),
        400, "invalid_request"),
    Row("Idempotency-Key of 129 characters", lambda c: keyed(publish(c, event(c)), "k" * 129),
        400, "invalid_request"),
    Row("Idempotency-Key with a slash", lambda c: keyed(publish(c, event(c)), "a/b"),
        400, "invalid_request"),
    Row("Idempotency-Key with a space", lambda c: keyed(publish(c, event(c)), "a b"),
        400, "invalid_request"),
    Row("Idempotency-Key with a Cyrillic homoglyph",
        lambda c: keyed(publish(c, event(c)), "k\u043e"), 400, "invalid_request"),
    Row("text/plain", lambda c: publish(c, event(c), content_type="text/plain"),
        400, "invalid_request"),
    Row("form encoded", lambda c: publish(c, b"channel=a", content_type=(
        "application/x-www-form-urlencoded")), 400, "invalid_request"),
    Row("5 MB body (over the app's 4 MB limit, refused by nginx first)",
        lambda c: publish(c, b"[" + b" " * (5 << 20) + b"]"), 413, "content_too_large"),
    Row("9 MB body (refused by nginx)", lambda c: publish(c, b" " * (9 << 20)),
        413, "content_too_large"),
    Row("GET on the publish API", lambda c: ("GET", "/api/events", {
        "Authorization": f"Bearer {c.key(c.secured.stack.publish_key)}"}, b""),
        405, "method_not_allowed"),
    Row("DELETE on the token API", lambda c: ("DELETE", "/api/tokens", {
        "Authorization": f"Bearer {c.key(c.secured.stack.publish_key)}"}, b""),
        405, "method_not_allowed"),
    Row("unknown API path", lambda c: publish(c, {}, path="/api/nothing"), 404, "not_found"),
    Row("unknown path under /streams", lambda c: get("/streams/nothing"), 404, "not_found"),
    Row("POST on /streams", lambda c: ("POST", "/streams", {}, b"{}"), 405,
        "method_not_allowed"),
]

# -- the token API ---------------------------------------------------------------------------------

TOKEN_API_ROWS = [
    Row("restricted key mints a token inside its scope (accepted)",
        lambda c: publish(c, {"channels": ["sec.orders.7.*", "sec.users.7"]},
                          key=c.secured.restricted_key, path="/api/tokens"), 201),
    Row("restricted key mints a wider prefix",
        lambda c: publish(c, {"channels": ["sec.*"]}, key=c.secured.restricted_key,
                          path="/api/tokens"), 403, "channel_forbidden"),
    Row("restricted key mints users.7.* with only users.7 in scope",
        lambda c: publish(c, {"channels": ["sec.users.7.*"]}, key=c.secured.restricted_key,
                          path="/api/tokens"), 403, "channel_forbidden"),
    Row("restricted key mints one channel in scope and one out",
        lambda c: publish(c, {"channels": ["sec.users.7", "sec.users.8"]},
                          key=c.secured.restricted_key, path="/api/tokens"),
        403, "channel_forbidden"),
    Row("grant with CR", lambda c: publish(c, {"channels": ["a\rb"]}, path="/api/tokens"),
        400, "invalid_name"),
    Row("grant that is a bare star", lambda c: publish(c, {"channels": ["*"]}, path="/api/tokens"),
        400, "invalid_name"),
    Row("ttl beyond the maximum",
        lambda c: publish(c, {"channels": ["a"], "ttl": 10**9}, path="/api/tokens"),
        400, "invalid_request"),
    Row("ttl as a string",
        lambda c: publish(c, {"channels": ["a"], "ttl": "60"}, path="/api/tokens"),
        400, "invalid_request"),
    Row("subject not a string",
        lambda c: publish(c, {"channels": ["a"], "subject": {"x": 1}}, path="/api/tokens"),
        400, "invalid_request"),
    # A subject never reaches the wire or a key (it is hashed): any text is fine.
    Row("subject with CR, LF and odd Unicode (accepted)",
        lambda c: publish(c, {"channels": ["a"], "subject": "u\r\nid: 1\u2028\u202e"},
                          path="/api/tokens"), 201),
    Row("subject of 129 characters",
        lambda c: publish(c, {"channels": ["a"], "subject": "s" * 129}, path="/api/tokens"),
        400, "invalid_request"),
]

ROWS = PUBLISH_ROWS + TOKEN_API_ROWS


@pytest.mark.parametrize("row", ROWS, ids=[row.id for row in ROWS])
def test_catalogue(secured, secret_register, unique, row: Row):
    run(secured, secret_register, unique, row)
