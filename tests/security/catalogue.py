"""The machinery of the catalogue of hostile requests (test_catalogue_streams.py,
test_catalogue_api.py): a row builds one request from a fresh context and names the answer it
must get; ``run`` sends it through nginx on the package's stack and ``check`` holds the answer
to the catalogue's rules.

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

from itsdangerous import URLSafeTimedSerializer

from eventgate.shared.tokens import SALT, ChannelTokens
from tests.clients import Answer, request
from tests.security.secured import SecretRegister, Secured


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


def publish(ctx: Ctx, body: object | bytes, key: str | None = None,
            content_type: str = "application/json", path: str = "/api/events"):
    key = ctx.key(ctx.secured.stack.publish_key if key is None else key)
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"Authorization": f"Bearer {key}", "Content-Type": content_type}
    return "POST", path, headers, raw


def event(ctx: Ctx, **fields: object) -> dict:
    return {"channel": f"{ctx.base}.a", **fields}


def run(secured: Secured, secret_register: SecretRegister, unique: str, row: Row) -> None:
    """Build ``row``'s request, register its secrets, send it through nginx, check the answer."""
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
