"""Channel names, event types and grants per the contract: 1-128 (types: 1-64) characters of
A-Z a-z 0-9 . _ : -, starting with a letter or digit; anything else is refused, never escaped."""

from __future__ import annotations

import pytest

from eventgate.shared.errors import InvalidName
from eventgate.shared.names import (
    CONTROL_PREFIX,
    grant_covers,
    validate_channel,
    validate_event_type,
    validate_grant,
)

VALID = [
    "a",
    "Z",
    "0",
    "orders.42",
    "users.7.inbox",
    "tenant:acme:orders",
    "a-b_c.d:e",
    "9lives",
    "trailing.",
    "a..b",
    "a" * 64,
]

INVALID = [
    "",
    ".hidden",
    "_x",
    ":x",
    "-x",
    "a b",
    " a",
    "a ",
    "a\r\nb",
    "a\nb",
    "a\n",
    "a\rb",
    "a\r",
    "\r",
    "a\0",
    "a\tb",
    "a/b",
    "../etc",
    "a/../b",
    "a*",
    "*",
    "a?",
    "a[b]",
    "a{b}",
    "a,b",
    "a=b",
    "a%0D",
    "a\\b",
    "a\u2028b",
    "a\u00a0b",
    "ａbc",  # fullwidth a
    "оrders",  # Cyrillic o
    "orders\u200b",  # zero-width space
    "caf\u00e9",
    "\u0661",  # Arabic-Indic digit one
    "a\ufeff",
]

NOT_STR = [None, 1, 1.5, b"orders", ["orders"], {"orders": 1}, True]


@pytest.mark.parametrize("name", VALID + ["a" * 128, "1" + "x" * 127])
def test_valid_channel(name):
    assert validate_channel(name) == name


@pytest.mark.parametrize("name", INVALID + ["a" * 129, "x" * 10_000], ids=repr)
def test_invalid_channel(name):
    with pytest.raises(InvalidName) as caught:
        validate_channel(name)
    assert caught.value.code == "invalid_name"
    assert isinstance(caught.value, ValueError)
    assert len(caught.value.message) < 300, "a refusal must not echo a huge name"


@pytest.mark.parametrize("name", NOT_STR, ids=repr)
def test_non_str_channel(name):
    with pytest.raises(InvalidName):
        validate_channel(name)


@pytest.mark.parametrize("name", VALID + ["message", "order.updated", "eventgate", "t" * 64])
def test_valid_event_type(name):
    assert validate_event_type(name) == name


@pytest.mark.parametrize("name", INVALID + ["t" * 65, "x\r\nid: 1", "x\nevent: admin"], ids=repr)
def test_invalid_event_type(name):
    with pytest.raises(InvalidName):
        validate_event_type(name)


@pytest.mark.parametrize("name", NOT_STR, ids=repr)
def test_non_str_event_type(name):
    with pytest.raises(InvalidName):
        validate_event_type(name)


@pytest.mark.parametrize("name", ["eventgate.", "eventgate.loss", "eventgate.shutdown.x"])
def test_reserved_event_type_prefix_is_refused(name):
    assert name.startswith(CONTROL_PREFIX)
    with pytest.raises(InvalidName, match="reserved"):
        validate_event_type(name)


def test_reserved_prefix_is_only_for_event_types():
    assert validate_channel("eventgate.loss") == "eventgate.loss"


# --- grants ------------------------------------------------------------------------------------


@pytest.mark.parametrize("grant", ["orders.42", "users.7.*", "users.*", "a.*", "a" * 128 + ".*"])
def test_valid_grant(grant):
    assert validate_grant(grant) == grant


@pytest.mark.parametrize(
    "grant",
    [
        "*",
        ".*",
        "..*",
        "*.x",
        "users.*.x",
        "users.7*",
        "users.7.**",
        "users.7.?",
        "users.[7]",
        "users.7. *",
        "users.7.*\n",
        "a" * 129 + ".*",
        "",
        None,
        7,
        b"users.*",
    ],
    ids=repr,
)
def test_invalid_grant(grant):
    with pytest.raises(InvalidName):
        validate_grant(grant)


@pytest.mark.parametrize(
    ("grant", "channel", "covered"),
    [
        ("users.7.*", "users.7.x", True),
        ("users.7.*", "users.7.a.b", True),
        ("users.7.*", "users.7", False),
        ("users.7.*", "users.70.x", False),
        ("users.7.*", "users.7x", False),
        ("users.*", "users.7.x", True),
        ("orders.42", "orders.42", True),
        ("orders.42", "orders.420", False),
        ("orders.42", "orders.4", False),
        ("orders.42", "Orders.42", False),
    ],
)
def test_grant_covers(grant, channel, covered):
    assert grant_covers(grant, channel) is covered
