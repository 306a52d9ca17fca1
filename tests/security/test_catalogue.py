"""A catalogue of hostile requests and the answer each must get, through nginx on the stack.

Every refusal must be the listed status with a JSON body ``{"error": code, "message": sentence}``
that never repeats the token or key it was given, and never a 5xx or a traceback. Accepted
requests are listed too (the rows marked 200/201), so that the table also proves the refusals
are not simply "everything fails".
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from unittest import mock
from urllib.parse import quote

import pytest
from itsdangerous import URLSafeTimedSerializer

from eventgate.shared.tokens import SALT, ChannelTokens
from tests.clients import Answer, request
from tests.security.conftest import Secured


@dataclass
class Ctx:
    """What a row needs to build its request: the stack, fresh channel names, tokens and keys."""

    secured: Secured
    base: str  # a channel prefix no other test uses, e.g. "sec.1a2b3c4d"
    used: list[str]  # secrets this request carries (checked against the answer, then the logs)

    def token(self, grants: list[str], *, subject: str | None = None, ttl: int | None = None,
              tokens: ChannelTokens | None = None) -> str:
        token, _ = (tokens or self.secured.tokens).issue(grants, subject, ttl)
        self.used.append(token)
        return token

    def key(self, key: str) -> str:
        self.used.append(key)
        return key


@dataclass
class Row:
    """``build(ctx) -> (method, target, headers, body)``; the expected status and error code."""

    id: str
    build: Callable[[Ctx], tuple[str, str | bytes, dict, bytes]]
    status: int
    error: str | None = None


def get(path: str, headers: dict | None = None):
    return "GET", path, headers or {}, b""


def stream(ctx: Ctx, token: str, *channels: str, extra: str = "", headers: dict | None = None):
    path = f"/streams?token={token}"
    path += "".join(f"&channel={quote(name, safe='')}" for name in channels)
    return get(path + extra, headers)


def flip(text: str, index: int) -> str:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    # Change a high bit: the low bits of a segment's last character may be padding.
    return text[:index] + alphabet[alphabet.index(text[index]) ^ 0b110000] + text[index + 1:]


def signed_at(when: float, ctx: Ctx, grants: list[str], ttl: int) -> str:
    """A genuine token, signed with the stack's key as if the clock read ``when``."""
    with mock.patch("time.time", return_value=when):
        return ctx.token(grants, ttl=ttl)


def foreign(ctx: Ctx, grants: list[str], *, key: str | None = None, salt: str = SALT) -> str:
    """A well-formed grant signed with another key or salt."""
    serializer = URLSafeTimedSerializer(key or ctx.secured.stack.secret_key, salt=salt)
    token = serializer.dumps({"v": 1, "ch": grants, "exp": int(time.time()) + 600})
    ctx.used.append(token)
    return token


# -- tokens ---------------------------------------------------------------------------------------

TOKEN_ROWS = [
    Row("no token", lambda c: get("/streams"), 401, "invalid_token"),
    Row("empty token", lambda c: get("/streams?token="), 401, "invalid_token"),
    Row("valid token (control)", lambda c: stream(c, c.token([f"{c.base}.a"])), 200),
    Row("tampered payload",
        lambda c: stream(c, flip(c.token([f"{c.base}.a"]), 5)), 401, "invalid_token"),
    Row("tampered signature",
        lambda c: stream(c, flip(c.token([f"{c.base}.a"]), -3)), 401, "invalid_token"),
    Row("truncated by one character",
        lambda c: stream(c, c.token([f"{c.base}.a"])[:-1]), 401, "invalid_token"),
    Row("payload only", lambda c: stream(c, c.token([f"{c.base}.a"]).split(".")[0]),
        401, "invalid_token"),
    Row("payload and timestamp only",
        lambda c: stream(c, c.token([f"{c.base}.a"]).rsplit(".", 1)[0]), 401, "invalid_token"),
    Row("signature of another token",
        lambda c: stream(c, c.token([f"{c.base}.a"]).rsplit(".", 1)[0] + "."
                         + c.token([f"{c.base}.b"]).rsplit(".", 1)[1]), 401, "invalid_token"),
    Row("expired", lambda c: stream(c, signed_at(time.time() - 120, c, [f"{c.base}.a"], 60)),
        401, "token_expired"),
    Row("signed longer ago than the longest ttl",
        lambda c: stream(c, signed_at(time.time() - 90000, c, [f"{c.base}.a"], 60)),
        401, "token_expired"),
    Row("signed an hour in the future",
        lambda c: stream(c, signed_at(time.time() + 3600, c, [f"{c.base}.a"], 60)),
        401, "invalid_token"),
    Row("signed 10 s in the future (clock skew, accepted)",
        lambda c: stream(c, signed_at(time.time() + 10, c, [f"{c.base}.a"], 60)), 200),
    Row("same key, another salt",
        lambda c: stream(c, foreign(c, [f"{c.base}.a"], salt="itsdangerous")),
        401, "invalid_token"),
    Row("same key, a password-reset salt",
        lambda c: stream(c, foreign(c, [f"{c.base}.a"], salt="password-reset")),
        401, "invalid_token"),
    Row("unknown key", lambda c: stream(c, foreign(c, [f"{c.base}.a"], key="not-our-key-" * 4)),
        401, "invalid_token"),
    Row("old key still configured (rotation, accepted)",
        lambda c: stream(c, c.token([f"{c.base}.a"], tokens=c.secured.old_tokens)), 200),
    Row("over the token length limit (5000 characters)",
        lambda c: stream(c, c.token([f"{c.base}.a"]) + "A" * 5000), 401, "invalid_token"),
    Row("far over any limit (20000 characters)",
        lambda c: stream(c, "A" * 20000), 414, "uri_too_long"),
    Row("non-ASCII character",
        lambda c: stream(c, c.token([f"{c.base}.a"]) + "%C3%A9"), 401, "invalid_token"),
    Row("CR LF inside",
        lambda c: stream(c, c.token([f"{c.base}.a"]) + "%0D%0Aid:%201"), 401, "invalid_token"),
    Row("NUL inside", lambda c: stream(c, c.token([f"{c.base}.a"]) + "%00"), 401, "invalid_token"),
    Row("a bare CR inside",
        lambda c: stream(c, c.token([f"{c.base}.a"]) + "%0Devent:%20x"), 401, "invalid_token"),
    Row("base64 padding added",
        lambda c: stream(c, c.token([f"{c.base}.a"]) + "%3D%3D"), 401, "invalid_token"),
    Row("space inside", lambda c: stream(c, "%20" + c.token([f"{c.base}.a"])), 401,
        "invalid_token"),
    Row("a bad token first, a good one second (the first counts)",
        lambda c: stream(c, "garbage&token=" + c.token([f"{c.base}.a"])), 401, "invalid_token"),
    Row("token in the cookie (accepted)",
        lambda c: get("/streams", {"Cookie": f"eventgate_token={c.token([f'{c.base}.a'])}"}),
        200),
    Row("tampered token in the cookie",
        lambda c: get("/streams",
                      {"Cookie": f"eventgate_token={flip(c.token([f'{c.base}.a']), 5)}"}),
        401, "invalid_token"),
]

# -- grants: which channels a token opens --------------------------------------------------------

GRANT_ROWS = [
    Row("a channel the token does not grant",
        lambda c: stream(c, c.token([f"{c.base}.a"]), f"{c.base}.b"), 403, "channel_forbidden"),
    Row("one granted channel and one not",
        lambda c: stream(c, c.token([f"{c.base}.a"]), f"{c.base}.a", f"{c.base}.b"),
        403, "channel_forbidden"),
    Row("prefix grant covers a child (accepted)",
        lambda c: stream(c, c.token([f"{c.base}.users.*"]), f"{c.base}.users.7"), 200),
    Row("prefix grant covers a grandchild (accepted)",
        lambda c: stream(c, c.token([f"{c.base}.users.*"]), f"{c.base}.users.7.x"), 200),
    Row("narrower prefix users.7.* covers users.7.a (accepted)",
        lambda c: stream(c, c.token([f"{c.base}.users.7.*"]), f"{c.base}.users.7.a"), 200),
    Row("users.7.* does not cover users.7 itself",
        lambda c: stream(c, c.token([f"{c.base}.users.7.*"]), f"{c.base}.users.7"),
        403, "channel_forbidden"),
    Row("users.7.* does not cover users.70 (the prefix ends at the dot)",
        lambda c: stream(c, c.token([f"{c.base}.users.7.*"]), f"{c.base}.users.70"),
        403, "channel_forbidden"),
    Row("users.7.* does not cover a sibling users.8",
        lambda c: stream(c, c.token([f"{c.base}.users.7.*"]), f"{c.base}.users.8"),
        403, "channel_forbidden"),
    Row("users.* does not cover users",
        lambda c: stream(c, c.token([f"{c.base}.users.*"]), f"{c.base}.users"),
        403, "channel_forbidden"),
    Row("exact users.7 does not cover users.7.x",
        lambda c: stream(c, c.token([f"{c.base}.users.7"]), f"{c.base}.users.7.x"),
        403, "channel_forbidden"),
    Row("a prefix-only token names no channel",
        lambda c: stream(c, c.token([f"{c.base}.users.*"])), 403, "channel_forbidden"),
    Row("33 channels under a prefix",
        lambda c: stream(c, c.token([f"{c.base}.*"]), *(f"{c.base}.{n}" for n in range(33))),
        400, "too_many_channels"),
    Row("32 channels under a prefix (accepted)",
        lambda c: stream(c, c.token([f"{c.base}.*"]), *(f"{c.base}.{n}" for n in range(32))),
        200),
]

# Requested channel names no token can make valid: each is refused by name before any grant.
ODD_CHANNELS = {
    "glob star": "{b}.*",
    "glob question mark": "{b}.?",
    "glob bracket": "{b}.[ab]",
    "path traversal": "{b}/../x",
    "CR": "{b}.a\rid: 1",
    "bare CR at the end": "{b}.a\r",
    "LF": "{b}.a\nevent: x",
    "NUL": "{b}.a\x00",
    "line separator U+2028": "{b}.a\u2028",
    "paragraph separator U+2029": "{b}.a\u2029",
    "next line U+0085": "{b}.a\x85",
    "right-to-left mark U+200F": "{b}.\u200fa",
    "right-to-left override U+202E": "{b}.\u202ea",
    "zero-width space U+200B": "{b}.a\u200b",
    "zero-width joiner U+200D": "{b}.a\u200d",
    "byte order mark U+FEFF": "\ufeff{b}.a",
    "Cyrillic homoglyph": "{b}.\u043erders",
    "fullwidth digit": "{b}.\uff11",
    "space": "{b}. a",
    "tab": "{b}.\ta",
    "empty": "",
    "129 characters": "{b}." + "x" * 125,
    "leading dot": ".{b}",
    "percent": "{b}.%41",
}

GRANT_ROWS += [
    Row(f"channel name: {label}",
        lambda c, name=name: stream(c, c.token([f"{c.base}.*"]), name.format(b=c.base)),
        400, "invalid_name")
    for label, name in ODD_CHANNELS.items()
]

# -- the resume cursor (Last-Event-ID header, lastEventId query) ----------------------------------

CURSOR_ROWS = [
    Row("Last-Event-ID with a bare CR (refused by nginx)",
        lambda c: stream(c, c.token([f"{c.base}.a"]), headers={"Last-Event-ID": b"1-0\rid: 9"}),
        400, "bad_request"),
    Row("Last-Event-ID with NUL (refused by nginx)",
        lambda c: stream(c, c.token([f"{c.base}.a"]), headers={"Last-Event-ID": b"1-0\x00"}),
        400, "bad_request"),
    # A lone LF ends a header line for nginx: "id: 9" is a header of its own, which nobody
    # reads; the cursor is "1-0". Nothing reaches the stream.
    Row("Last-Event-ID with a lone LF (two header lines, accepted)",
        lambda c: stream(c, c.token([f"{c.base}.a"]),
                         headers={"Last-Event-ID": b"1-0\nid: 9"}), 200),
    Row("Last-Event-ID non-ASCII",
        lambda c: stream(c, c.token([f"{c.base}.a"]),
                         headers={"Last-Event-ID": "1-0\u00e9".encode()}),
        400, "invalid_cursor"),
    Row("Last-Event-ID with U+2028",
        lambda c: stream(c, c.token([f"{c.base}.a"]),
                         headers={"Last-Event-ID": "1-0\u2028".encode()}),
        400, "invalid_cursor"),
    Row("Last-Event-ID garbage",
        lambda c: stream(c, c.token([f"{c.base}.a"]), headers={"Last-Event-ID": "x' OR 1=1"}),
        400, "invalid_cursor"),
    Row("Last-Event-ID of 8000 characters",
        lambda c: stream(c, c.token([f"{c.base}.a"]), headers={"Last-Event-ID": "1" * 8000}),
        400, "invalid_cursor"),
    Row("Last-Event-ID over nginx's header limit",
        lambda c: stream(c, c.token([f"{c.base}.a"]), headers={"Last-Event-ID": "1" * 9000}),
        400, "bad_request"),
    Row("Last-Event-ID well-formed (accepted)",
        lambda c: stream(c, c.token([f"{c.base}.a"]), headers={"Last-Event-ID": "1-0"}), 200),
    Row("lastEventId with CR LF",
        lambda c: stream(c, c.token([f"{c.base}.a"]), extra="&lastEventId=1-0%0D%0Aid:%209"),
        400, "invalid_cursor"),
    Row("lastEventId with a bare CR",
        lambda c: stream(c, c.token([f"{c.base}.a"]), extra="&lastEventId=1-0%0Devent:%20x"),
        400, "invalid_cursor"),
    Row("lastEventId with NUL",
        lambda c: stream(c, c.token([f"{c.base}.a"]), extra="&lastEventId=1-0%00"),
        400, "invalid_cursor"),
    Row("lastEventId non-ASCII",
        lambda c: stream(c, c.token([f"{c.base}.a"]), extra="&lastEventId=1-0%C3%A9"),
        400, "invalid_cursor"),
    Row("lastEventId with a zero-width space",
        lambda c: stream(c, c.token([f"{c.base}.a"]), extra="&lastEventId=1-0%E2%80%8B"),
        400, "invalid_cursor"),
    Row("lastEventId of 8000 characters",
        lambda c: stream(c, c.token([f"{c.base}.a"]), extra="&lastEventId=" + "1" * 8000),
        400, "invalid_cursor"),
    Row("lastEventId naming an invalid channel",
        lambda c: stream(c, c.token([f"{c.base}.a"]), extra="&lastEventId=a%0D=1-0"),
        400, "invalid_cursor"),
    Row("lastEventId naming a channel outside the token (ignored, accepted)",
        lambda c: stream(c, c.token([f"{c.base}.a"]),
                         extra=f"&lastEventId=secret.other%3D1-0,{c.base}.a%3D0-0"), 200),
    Row("a bare id for a two-channel stream",
        lambda c: stream(c, c.token([f"{c.base}.a", f"{c.base}.b"]), extra="&lastEventId=1-0"),
        400, "invalid_cursor"),
]

# -- other request headers ------------------------------------------------------------------------

HEADER_ROWS = [
    Row("header name with a space (refused by nginx)",
        lambda c: get("/healthz", {"Bad Name": "x"}), 400, "bad_request"),
    Row("header value with a bare CR (refused by nginx)",
        lambda c: get("/healthz", {"X-Anything": b"a\rb"}), 400, "bad_request"),
    Row("header value with ESC (refused by gunicorn, in JSON)",
        lambda c: get("/healthz", {"X-Anything": b"a\x1b[31mb"}), 400, "bad_request"),
    Row("header value with DEL on /streams (refused by gunicorn, in JSON)",
        lambda c: stream(c, c.token([f"{c.base}.a"]), headers={"X-Anything": b"a\x7fb"}),
        400, "bad_request"),
    Row("Last-Event-ID with a control character (refused by gunicorn, in JSON)",
        lambda c: stream(c, c.token([f"{c.base}.a"]), headers={"Last-Event-ID": b"1-0\x01"}),
        400, "bad_request"),
    Row("X-Request-ID with odd characters (replaced, accepted)",
        lambda c: get("/healthz", {"X-Request-ID": "a b\t<x>" + "y" * 300}), 200),
    Row("Host with a space (refused by nginx)",
        lambda c: ("GET", "/healthz", {"Host": "a b"}, b""), 400, "bad_request"),
    Row("request line over nginx's limit", lambda c: get("/" + "a" * 9000), 414, "uri_too_long"),
    Row("Authorization with a CR inside (refused by nginx)",
        lambda c: ("POST", "/api/events",
                   {"Authorization": b"Bearer " + c.key(c.secured.stack.publish_key).encode()
                    + b"\rX-Injected: 1", "Content-Type": "application/json"}, b"{}"),
        400, "bad_request"),
]

# -- the publish API ------------------------------------------------------------------------------


def publish(ctx: Ctx, body: object | bytes, key: str | None = None,
            content_type: str = "application/json", path: str = "/api/events"):
    key = ctx.key(ctx.secured.stack.publish_key if key is None else key)
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"Authorization": f"Bearer {key}", "Content-Type": content_type}
    return "POST", path, headers, raw


def event(ctx: Ctx, **fields: object) -> dict:
    return {"channel": f"{ctx.base}.a", **fields}


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

ROWS = TOKEN_ROWS + GRANT_ROWS + CURSOR_ROWS + HEADER_ROWS + PUBLISH_ROWS + TOKEN_API_ROWS


@pytest.mark.parametrize("row", ROWS, ids=[row.id for row in ROWS])
def test_catalogue(secured, secret_register, unique, row: Row):
    ctx = Ctx(secured, f"sec.{unique}", [])
    method, target, headers, body = row.build(ctx)
    secret_register.add(*ctx.used)
    answer = request(secured.port, method, target, headers, body, timeout=15)
    path = target if isinstance(target, str) else target.decode("latin-1")
    check(answer, row, ctx.used, is_stream=path.startswith("/streams"))


def check(answer: Answer, row: Row, used: list[str], is_stream: bool = True) -> None:
    shown = f"{answer.status} {answer.headers.get('content-type')} {answer.body[:300]!r}"
    assert answer.status == row.status, shown
    if row.status == 200:
        expected = "text/event-stream" if is_stream else "application/json"
        assert answer.headers["content-type"].startswith(expected), shown
        return
    assert answer.is_json, shown
    payload = answer.json()
    if row.status == 201:
        return
    assert payload["error"] == row.error, shown
    assert isinstance(payload["message"], str) and payload["message"], shown
    text = answer.body.decode("utf-8", "replace")
    assert "Traceback" not in text
    for value in used:
        assert value not in text, "a secret was echoed in an error"


def test_refusals_touch_nothing_in_redis(secured, secret_register, unique):
    """A refused stream subscribes to nothing and holds no lease: the checks come first."""
    from eventgate.shared import keys
    from eventgate.shared.keys import live_channel

    channel = f"sec.{unique}.quiet"
    good = secured.tokens.issue([channel], subject=f"quiet-{unique}")[0]
    other = secured.tokens.issue([f"sec.{unique}.other"], subject=f"quiet-{unique}")[0]
    secret_register.add(good, other)
    paths = [f"/streams?token={flip(good, 5)}", f"/streams?token={other}&channel={channel}",
             f"/streams?token={good}&lastEventId=%0D", f"/streams?token={good}&channel=%0D"]
    for path in paths:
        assert request(secured.port, "GET", path).status in (400, 401, 403)
    client = secured.stack.redis()
    assert client.pubsub_numsub(live_channel(channel)) == [(live_channel(channel).encode(), 0)]
    assert not client.exists(keys.subject_streams_key(f"quiet-{unique}"))
