"""ChannelTokens issue/verify and Grant: signing, expiry, rotation, tampering, scope (T-1, T-2)."""

from __future__ import annotations

import base64
import json
import re
import secrets
import time
from datetime import UTC, datetime

import pytest
from itsdangerous import URLSafeTimedSerializer

from eventgate.shared.config import Config
from eventgate.shared.errors import ChannelNotGranted, InvalidName, TokenError, TokenExpired
from eventgate.shared.tokens import SALT, ChannelTokens, Grant, IssuedToken
from tests.unit.tokenclock import T0


def utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def signed(key: str, payload: object, salt: str = SALT) -> str:
    """A token signed with ``key`` and ``salt`` holding any payload (what a key holder can make)."""
    return URLSafeTimedSerializer(key, salt=salt).dumps(payload)


def grant_payload(**overrides: object) -> dict:
    return {"v": 1, "ch": ["orders.42"], "exp": int(T0) + 60, **overrides}


# --- round trip --------------------------------------------------------------------------------


def test_issue_verify_round_trip(channel_tokens):
    token, expires_at = channel_tokens.issue(["orders.42", "users.7.*"], subject="user-7", ttl=60)
    assert expires_at == utc(T0 + 60)
    assert re.fullmatch(r"[A-Za-z0-9_.-]+", token), "a token must be URL-safe"
    assert channel_tokens.verify(token) == Grant(
        grants=("orders.42", "users.7.*"), subject="user-7", expires_at=T0 + 60, issued_at=T0
    )


def test_issue_defaults_and_duplicates(key, clock):
    channel_tokens = ChannelTokens([key], default_ttl_seconds=123)
    token, expires_at = channel_tokens.issue(["a", "b", "a"])
    assert expires_at == utc(T0 + 123)
    grant = channel_tokens.verify(token)
    assert grant.grants == ("a", "b")
    assert grant.subject is None


def test_token_payload_is_readable_but_holds_no_secret(channel_tokens, key):
    token, _ = channel_tokens.issue(["orders.42"], subject="user-7")
    assert key not in token
    payload = URLSafeTimedSerializer("any other key", salt=SALT).loads_unsafe(token)[1]
    assert payload["ch"] == ["orders.42"] and payload["sub"] == "user-7"


def test_issue_returns_a_named_pair_in_utc(channel_tokens):
    issued = channel_tokens.issue(["a"], ttl=60)

    assert isinstance(issued, IssuedToken)
    assert issued.expires_at.tzinfo is UTC
    assert channel_tokens.verify(issued.token).expires_at == issued.expires_at.timestamp()


def test_from_config_takes_the_keys_ttls_and_length_of_the_config(clock):
    config = Config(secret_keys=("new-key", "old-key"), publish_keys=("publisher-key",),
                    token_ttl_seconds=77, token_max_ttl_seconds=300, max_token_bytes=500)
    tokens = ChannelTokens.from_config(config)

    token, expires_at = tokens.issue(["a"])

    assert expires_at == utc(T0 + 77)
    assert ChannelTokens(["new-key"]).verify(token).grants == ("a",)  # the first key signs
    assert tokens.verify(ChannelTokens(["old-key"]).issue(["b"]).token).grants == ("b",)
    with pytest.raises(ValueError, match="300"):
        tokens.issue(["a"], ttl=301)
    assert tokens.max_token_bytes == 500


def test_a_key_is_required():
    with pytest.raises(ValueError):
        ChannelTokens([])


# --- expiry ------------------------------------------------------------------------------------


def test_valid_until_expiry(channel_tokens, clock):
    token, _ = channel_tokens.issue(["a"], ttl=60)
    clock.now = T0 + 59.9
    assert channel_tokens.verify(token).expires_at == T0 + 60


def test_expired_token(channel_tokens, clock):
    token, expires_at = channel_tokens.issue(["a"], ttl=60)
    clock.now = T0 + 60
    with pytest.raises(TokenExpired) as caught:
        channel_tokens.verify(token)
    assert caught.value.expired_at == expires_at.timestamp()
    assert caught.value.code == "token_expired"
    assert isinstance(caught.value, TokenError)
    assert token not in str(caught.value)


def test_token_expired_past_max_ttl_reports_when_it_expired(channel_tokens, clock):
    # Past max_ttl_seconds itsdangerous itself refuses the signature (SignatureExpired); the
    # error must still say when the token expired, not when it was signed.
    token, expires_at = channel_tokens.issue(["a"], ttl=60)
    clock.now = T0 + channel_tokens.max_ttl_seconds + 10
    with pytest.raises(TokenExpired) as caught:
        channel_tokens.verify(token)
    assert caught.value.expired_at == expires_at.timestamp()


def test_token_signed_in_the_future_is_refused(channel_tokens, clock):
    clock.now = T0 + 3600
    token, _ = channel_tokens.issue(["a"], ttl=60)
    clock.now = T0
    with pytest.raises(TokenError):
        channel_tokens.verify(token)


# --- tampering and malformed tokens ------------------------------------------------------------


_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def _flip(text: str, index: int) -> str:
    # Flip the two high bits of the character's 6: the last character of a base64 segment
    # carries only 2 or 4 significant bits, and changing the unused low ones decodes to the same
    # bytes (a base64 property, not a forgery).
    replacement = _B64[_B64.index(text[index]) ^ 0b110000]
    return text[:index] + replacement + text[index + 1 :]


def test_tampered_byte_anywhere_is_refused(channel_tokens):
    token, _ = channel_tokens.issue(["orders.42"], subject="user-7")
    for index in range(len(token)):
        if token[index] == ".":
            continue
        with pytest.raises(TokenError):
            channel_tokens.verify(_flip(token, index))


def test_rewritten_grants_are_refused(channel_tokens):
    token, _ = channel_tokens.issue(["orders.42"])
    payload_b64, rest = token.split(".", 1)
    padded = payload_b64 + "=" * (-len(payload_b64) % 4)
    payload = json.loads(base64.urlsafe_b64decode(padded))
    payload["ch"] = ["admin"]
    forged = base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")
    with pytest.raises(TokenError):
        channel_tokens.verify(forged + "." + rest)


@pytest.mark.parametrize(
    "cut",
    [
        lambda t: t[:-1],
        lambda t: t[: len(t) // 2],
        lambda t: t.rsplit(".", 1)[0],
        lambda t: t.split(".")[0],
        lambda t: t.split(".", 1)[1],
        lambda t: ".",
        lambda t: "..",
        lambda t: "x",
    ],
)
def test_truncated_or_garbage_token_is_refused(channel_tokens, cut):
    token, _ = channel_tokens.issue(["a"])
    with pytest.raises(TokenError):
        channel_tokens.verify(cut(token))


@pytest.mark.parametrize("token", [None, "", b"bytes", 123, ["a"]])
def test_missing_or_non_string_token_is_refused(channel_tokens, token):
    with pytest.raises(TokenError):
        channel_tokens.verify(token)


@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(lambda t: "é" * 20, id="all-non-ascii"),
        pytest.param(lambda t: t[:5] + "é" + t[5:], id="non-ascii-in-payload"),
        pytest.param(lambda t: t.replace(".", "\u3002", 1), id="ideographic-full-stop"),
        pytest.param(lambda t: t + "\0", id="nul"),
        pytest.param(lambda t: t[:5] + "\udcff" + t[5:], id="lone-surrogate"),
        pytest.param(lambda t: t + " ", id="space"),
    ],
)
def test_non_ascii_or_control_token_is_refused_not_a_crash(channel_tokens, mangle):
    token, _ = channel_tokens.issue(["a"])
    with pytest.raises(TokenError):
        channel_tokens.verify(mangle(token))


def test_only_the_exact_token_verifies(channel_tokens):
    # itsdangerous decodes the signature leniently (drops non-ASCII, skips characters outside
    # the base64 alphabet, accepts extra padding), so a valid token with junk in its signature
    # still verifies unless verify() checks the token's alphabet itself. Tokens must be
    # canonical: one grant must not have many spellings (logs, revocation lists), and a token
    # holding CR/LF or non-ASCII must never pass.
    token, _ = channel_tokens.issue(["a"])
    accepted = []
    for junk in ["\u2028", "é", "ééééé", "\r\n", "\r\n\r\n", "=", "=="]:
        for mangled in (token + junk, token[:-5] + junk + token[-5:]):
            try:
                channel_tokens.verify(mangled)
            except TokenError:
                continue
            accepted.append(mangled[len(token) - 8 :])
    assert accepted == [], f"tokens with junk in the signature verified: {accepted!r}"


def test_wrong_salt_is_refused(channel_tokens, key):
    with pytest.raises(TokenError):
        channel_tokens.verify(signed(key, grant_payload(), salt="other"))
    with pytest.raises(TokenError):
        channel_tokens.verify(URLSafeTimedSerializer(key).dumps(grant_payload()))  # default salt


def test_unknown_key_is_refused(channel_tokens, clock):
    foreign, _ = ChannelTokens([secrets.token_urlsafe(32)]).issue(["a"])
    with pytest.raises(TokenError):
        channel_tokens.verify(foreign)


def test_oversize_token_is_refused_by_length_before_any_hmac(key, clock, monkeypatch):
    small = ChannelTokens([key], max_token_bytes=64)
    token, _ = ChannelTokens([key]).issue([f"channel.{i}" for i in range(10)])
    assert len(token) > 64

    def no_hmac(*args, **kwargs):
        raise AssertionError("the signature was checked for an oversize token")

    monkeypatch.setattr(URLSafeTimedSerializer, "loads", no_hmac)
    with pytest.raises(TokenError, match="longer"):
        small.verify(token)

    huge = "A" * 10_000_000
    started = time.perf_counter()
    with pytest.raises(TokenError):
        ChannelTokens([key]).verify(huge)
    assert time.perf_counter() - started < 0.05


def test_a_token_too_long_to_ever_verify_is_not_issued(key, clock):
    # Random names: itsdangerous compresses payloads, so repetitive names would stay short.
    channels = [secrets.token_hex(8) for _ in range(30)]
    token, _ = ChannelTokens([key]).issue(channels)
    small = ChannelTokens([key], max_token_bytes=len(token) - 1)

    with pytest.raises(ValueError, match=f"{len(token) - 1} bytes"):
        small.issue(channels)
    assert ChannelTokens([key], max_token_bytes=len(token)).issue(channels).token == token


def test_token_at_the_length_limit_is_accepted(key, clock):
    token, _ = ChannelTokens([key]).issue(["a"])
    assert ChannelTokens([key], max_token_bytes=len(token)).verify(token).grants == ("a",)


# --- payload shape (only a key holder can sign these) ------------------------------------------


def test_well_formed_payload_signed_by_hand_verifies(channel_tokens, key):
    assert channel_tokens.verify(signed(key, grant_payload())).grants == ("orders.42",)


@pytest.mark.parametrize(
    "payload",
    [
        [1, 2],
        "orders.42",
        None,
        42,
        {},
        grant_payload(v=2),
        grant_payload(v="1"),
        {k: v for k, v in grant_payload().items() if k != "v"},
        grant_payload(ch="orders.42"),
        grant_payload(ch=["bad name"]),
        grant_payload(ch=["*"]),
        grant_payload(ch=[42]),
        {k: v for k, v in grant_payload().items() if k != "exp"},
        grant_payload(exp="soon"),
        grant_payload(sub=7),
    ],
)
def test_payload_that_is_not_a_grant_is_refused(channel_tokens, key, payload):
    with pytest.raises(TokenError):
        channel_tokens.verify(signed(key, payload))


def test_signed_payload_that_is_not_json_is_a_token_error(channel_tokens, key):
    # itsdangerous raises BadPayload (a BadData, not a BadSignature) for a correctly signed
    # payload it cannot decode; verify() promises TokenError only.
    signer = URLSafeTimedSerializer(key, salt=SALT).make_signer()
    with pytest.raises(TokenError):
        channel_tokens.verify(signer.sign(b"not-json").decode())


# --- key rotation ------------------------------------------------------------------------------


def test_rotated_keys(clock):
    old, new = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    old_token, _ = ChannelTokens([old]).issue(["a"])
    rotated = ChannelTokens([new, old])
    assert rotated.verify(old_token).grants == ("a",)  # old key still verifies while listed

    new_token, _ = rotated.issue(["b"])
    assert ChannelTokens([new]).verify(new_token).grants == ("b",)  # the first key signs
    with pytest.raises(TokenError):
        ChannelTokens([old]).verify(new_token)

    with pytest.raises(TokenError):
        ChannelTokens([new]).verify(old_token)  # old key removed → refused


# --- grants and scope --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("channel", "covered"),
    [
        ("users.7.x", True),
        ("users.7.a.b", True),
        ("users.7.", True),
        ("users.7", False),
        ("users.70.x", False),
        ("users.7x", False),
        ("users.8.x", False),
        ("xusers.7.x", False),
        ("orders.42", True),
        ("orders.42.x", False),
        ("orders.4", False),
        ("orders.420", False),
    ],
)
def test_grant_covers(channel, covered):
    grant = Grant(grants=("users.7.*", "orders.42"), subject=None, expires_at=T0)
    assert grant.covers(channel) is covered


def test_resolve_requested_channels():
    grant = Grant(grants=("users.7.*", "orders.42"), subject=None, expires_at=T0)
    assert grant.resolve(["users.7.a", "orders.42", "users.7.a"]) == ["users.7.a", "orders.42"]


def test_resolve_channel_not_granted():
    grant = Grant(grants=("users.7.*", "orders.42"), subject=None, expires_at=T0)
    with pytest.raises(ChannelNotGranted) as caught:
        grant.resolve(["orders.42", "orders.43"])
    assert caught.value.channel == "orders.43"
    with pytest.raises(ChannelNotGranted):
        grant.resolve(["users.7"])


@pytest.mark.parametrize("name", ["users.7.*", "users.7.a b", "../x", "", "a\r\nb", None])
def test_resolve_malformed_requested_name(name):
    grant = Grant(grants=("users.7.*",), subject=None, expires_at=T0)
    with pytest.raises(InvalidName):
        grant.resolve([name])


def test_resolve_none_requested_gives_exact_grants():
    grant = Grant(grants=("a", "users.7.*", "b"), subject=None, expires_at=T0)
    assert grant.resolve([]) == ["a", "b"]


def test_resolve_none_requested_with_only_prefix_grants():
    grant = Grant(grants=("users.7.*",), subject=None, expires_at=T0)
    with pytest.raises(ChannelNotGranted):
        grant.resolve([])


def test_issued_prefix_grant_resolves(channel_tokens):
    token, _ = channel_tokens.issue(["users.7.*"])
    grant = channel_tokens.verify(token)
    assert grant.resolve(["users.7.inbox"]) == ["users.7.inbox"]
    with pytest.raises(ChannelNotGranted):
        grant.resolve(["users.70.inbox"])


# --- issue refusals ----------------------------------------------------------------------------


@pytest.mark.parametrize("ttl", [0, -1, 86401, 1.5, True, "60"])
def test_ttl_out_of_bounds(channel_tokens, ttl):
    with pytest.raises(ValueError):
        channel_tokens.issue(["a"], ttl=ttl)


@pytest.mark.parametrize("ttl", [1, 86400])
def test_ttl_bounds_inclusive(channel_tokens, ttl):
    _, expires_at = channel_tokens.issue(["a"], ttl=ttl)
    assert expires_at == utc(T0 + ttl)


@pytest.mark.parametrize("subject", ["", "x" * 129, 7, b"user", "\ud800"])
def test_bad_subject(channel_tokens, subject):
    with pytest.raises(ValueError):
        channel_tokens.issue(["a"], subject=subject)


def test_longest_subject(channel_tokens):
    token, _ = channel_tokens.issue(["a"], subject="x" * 128)
    assert channel_tokens.verify(token).subject == "x" * 128


def test_no_grants(channel_tokens):
    with pytest.raises(ValueError):
        channel_tokens.issue([])


@pytest.mark.parametrize("grant", ["*", ".*", "users.*.x", "users.7*", "a b", "a\nb", "users.?"])
def test_bad_grant(channel_tokens, grant):
    with pytest.raises(InvalidName):
        channel_tokens.issue([grant])


# --- clock skew between the hosts that mint and check tokens ------------------------------------


def test_token_signed_slightly_in_the_future_is_accepted(channel_tokens, clock):
    # Two hosts' clocks a few seconds apart must not make every fresh token "expired".
    clock.now = T0 + 20
    token, expires_at = channel_tokens.issue(["a"], ttl=60)
    clock.now = T0
    assert channel_tokens.verify(token).expires_at == expires_at.timestamp()


def test_token_signed_beyond_the_skew_is_invalid_not_expired(channel_tokens, clock):
    # "expired" would make a client fetch another token from the same fast clock, forever.
    from eventgate.shared.tokens import MAX_CLOCK_SKEW_SECONDS

    clock.now = T0 + MAX_CLOCK_SKEW_SECONDS + 5
    token, _ = channel_tokens.issue(["a"], ttl=600)
    clock.now = T0
    with pytest.raises(TokenError) as caught:
        channel_tokens.verify(token)
    assert not isinstance(caught.value, TokenExpired)
    assert "future" in caught.value.message
