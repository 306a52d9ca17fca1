"""The catalogue of hostile stream requests, through nginx on the stack: tokens, grants, odd
channel names, the resume cursor and other request headers, each with the answer it must get
(the rules every answer is held to are in tests/security/catalogue.py; the publish and token
APIs' rows are in test_catalogue_api.py)."""

from __future__ import annotations

import time

import pytest

from tests.clients import request
from tests.security.catalogue import Row, flip, foreign, get, run, signed_at, stream

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

ROWS = TOKEN_ROWS + GRANT_ROWS + CURSOR_ROWS + HEADER_ROWS


@pytest.mark.parametrize("row", ROWS, ids=[row.id for row in ROWS])
def test_catalogue(secured, secret_register, unique, row: Row):
    run(secured, secret_register, unique, row)


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
