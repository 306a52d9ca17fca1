"""Publisher key entries (``KEY`` or ``KEY:grant+grant``) and the grant algebra behind them."""

from __future__ import annotations

import secrets

import pytest

from eventgate.shared.config import Config
from eventgate.shared.errors import ConfigError
from eventgate.shared.names import grant_within
from eventgate.shared.publishkeys import PublishKey, parse_publish_key, parse_publish_keys

KEY = secrets.token_urlsafe(32)


@pytest.mark.parametrize(
    ("grant", "scope", "within"),
    [
        ("users.7", "users.*", True),
        ("users.7.x", "users.*", True),
        ("users.7.*", "users.*", True),
        ("users.*", "users.*", True),
        ("users.*", "users.7.*", False),  # wider than the scope
        ("users.7", "users.7.*", False),  # a prefix grant covers what is under it, not itself
        ("users.70", "users.7.*", False),  # the prefix ends at the dot
        ("users.7.a", "users.7.*", True),
        ("users.7.*", "users.7", False),  # a prefix is never within an exact name
        ("users.7", "users.7", True),
        ("users", "users.*", False),
        ("usersX.1", "users.*", False),
    ],
)
def test_grant_within(grant, scope, within):
    assert grant_within(grant, scope) is within


def test_plain_key_is_unrestricted():
    entry = parse_publish_key(KEY)
    assert entry == PublishKey(KEY)
    assert entry.allows_channel("anything.at.all")
    assert entry.allows_grant("anything.*")


def test_restricted_key_allows_only_its_grants():
    entry = parse_publish_key(f"{KEY}:orders.*+users.7")
    assert entry.key == KEY and entry.scope == ("orders.*", "users.7")
    assert entry.allows_channel("orders.42")
    assert entry.allows_channel("users.7")
    assert not entry.allows_channel("users.8")
    assert not entry.allows_channel("orders")
    assert entry.allows_grant("orders.42.*")
    assert not entry.allows_grant("users.*")
    assert not entry.allows_grant("users.7.*")


def test_base64_keys_with_plus_slash_and_equals_parse():
    key = "AbC+/dEf=" * 5
    assert parse_publish_key(f"{key}:a.*") == PublishKey(key, ("a.*",))


@pytest.mark.parametrize(
    "spec",
    ["", ":orders.*", f"{KEY}:", f"{KEY}:orders.*+", f"{KEY}:*", f"{KEY}:orders.**",
     f"{KEY}:bad\rname", f"{KEY}:a b", "k\u00e9y", "two words", f"{KEY}:+a"],
)
def test_malformed_entries_are_refused_without_echoing_the_key(spec):
    with pytest.raises(ConfigError) as caught:
        parse_publish_key(spec, position=3)
    assert "#3" in caught.value.message
    assert KEY not in caught.value.message


def test_repr_never_shows_the_key():
    assert KEY not in repr(parse_publish_key(f"{KEY}:a.*"))
    assert KEY not in repr(parse_publish_keys((KEY,)))


def test_config_from_env_takes_restricted_entries():
    other = secrets.token_urlsafe(32)
    config = Config.from_env({
        "EVENTGATE_SECRET_KEY": secrets.token_urlsafe(32),
        "EVENTGATE_PUBLISH_KEY": f"{KEY}, {other}:orders.*+users.7",
        "EVENTGATE_VAR_DIR": "/nonexistent",
    })
    assert parse_publish_keys(config.publish_keys) == (
        PublishKey(KEY), PublishKey(other, ("orders.*", "users.7"))
    )


def test_config_refuses_a_malformed_entry_at_start():
    with pytest.raises(ConfigError):
        Config(secret_keys=("s",), publish_keys=(f"{KEY}:bad name",))


def test_production_weakness_is_judged_on_the_key_not_its_scope():
    # A short key with a long scope is still a short key.
    with pytest.raises(ConfigError):
        Config(secret_keys=(KEY,), publish_keys=("short:" + "orders.*+" * 5 + "a",),
               environment="production")
    Config(secret_keys=(KEY,), publish_keys=(f"{KEY}:orders.*",), environment="production")
