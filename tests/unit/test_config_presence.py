"""The presence settings of Config: EVENTGATE_PRESENCE_CHANNELS and its grace period."""

from __future__ import annotations

import secrets

import pytest

from eventgate.shared.config import Config
from eventgate.shared.errors import ConfigError

SECRETS = {"EVENTGATE_SECRET_KEY": secrets.token_urlsafe(32),
           "EVENTGATE_PUBLISH_KEY": secrets.token_urlsafe(32),
           "EVENTGATE_VAR_DIR": "/nonexistent"}


def test_defaults_announce_nothing():
    config = Config.from_env(SECRETS)
    assert config.presence_channels == ()
    assert config.presence_grace_seconds == 5.0


def test_patterns_and_grace_are_read():
    config = Config.from_env({**SECRETS, "EVENTGATE_PRESENCE_CHANNELS": "rooms.*, lobby",
                              "EVENTGATE_PRESENCE_GRACE_SECONDS": "2.5"})
    assert config.presence_channels == ("rooms.*", "lobby")
    assert config.presence_grace_seconds == 2.5


@pytest.mark.parametrize("pattern", ["rooms*", "*", "-rooms.*", "rooms.a b"])
def test_a_bad_pattern_is_refused(pattern):
    with pytest.raises(ConfigError, match="EVENTGATE_PRESENCE_CHANNELS"):
        Config.from_env({**SECRETS, "EVENTGATE_PRESENCE_CHANNELS": pattern})


def test_a_negative_grace_is_refused():
    with pytest.raises(ConfigError, match="EVENTGATE_PRESENCE_GRACE_SECONDS"):
        Config.from_env({**SECRETS, "EVENTGATE_PRESENCE_GRACE_SECONDS": "-1"})
