"""The security settings of Config: limits, slow-client timeouts, CORS origins, their defaults."""

from __future__ import annotations

import dataclasses
import secrets

import pytest

from eventgate.shared.config import Config
from eventgate.shared.errors import ConfigError

SECRETS = {"EVENTGATE_SECRET_KEY": secrets.token_urlsafe(32),
           "EVENTGATE_PUBLISH_KEY": secrets.token_urlsafe(32),
           "EVENTGATE_VAR_DIR": "/nonexistent"}


def test_defaults():
    config = Config.from_env(SECRETS)
    assert config.max_streams_per_subject == 16
    assert config.max_streams_per_worker == 10000
    assert config.cors_origins == ()
    assert (config.stream_connect_rate, config.stream_connect_burst) == (50, 1000)
    assert config.connections_per_address == 2000
    assert (config.client_header_timeout_seconds, config.client_body_timeout_seconds,
            config.send_timeout_seconds) == (10, 30, 60)


def test_every_setting_is_read():
    config = Config.from_env({
        **SECRETS,
        "EVENTGATE_MAX_STREAMS_PER_SUBJECT": "3", "EVENTGATE_MAX_STREAMS_PER_WORKER": "0",
        "EVENTGATE_CORS_ORIGINS": "https://app.example.com, http://localhost:3000",
        "EVENTGATE_STREAM_CONNECT_RATE": "5", "EVENTGATE_STREAM_CONNECT_BURST": "7",
        "EVENTGATE_CONNECTIONS_PER_ADDRESS": "9", "EVENTGATE_CLIENT_HEADER_TIMEOUT": "2",
        "EVENTGATE_CLIENT_BODY_TIMEOUT": "3", "EVENTGATE_SEND_TIMEOUT": "4",
    })
    assert (config.max_streams_per_subject, config.max_streams_per_worker) == (3, 0)
    assert config.cors_origins == ("https://app.example.com", "http://localhost:3000")
    assert (config.stream_connect_rate, config.stream_connect_burst,
            config.connections_per_address) == (5, 7, 9)
    assert (config.client_header_timeout_seconds, config.client_body_timeout_seconds,
            config.send_timeout_seconds) == (2, 3, 4)


@pytest.mark.parametrize("origin", [
    "*", "null", "https://app.example.com/", "https://app.example.com/path", "HTTPS://APP.COM",
    "app.example.com", "ftp://app.example.com", 'https://a.com"; evil', "https://a.com\r\nX: y",
    "https://a.com:123456", "https://",
])
def test_malformed_cors_origins_are_refused(origin):
    with pytest.raises(ConfigError):
        Config.from_env({**SECRETS, "EVENTGATE_CORS_ORIGINS": origin})


@pytest.mark.parametrize("origin", ["https://app.example.com", "http://localhost:3000",
                                    "http://127.0.0.1:8080", "http://[::1]:8080"])
def test_plain_origins_are_accepted(origin):
    assert Config.from_env({**SECRETS, "EVENTGATE_CORS_ORIGINS": origin}).cors_origins == (origin,)


@pytest.mark.parametrize(("field", "value"), [
    ("max_streams_per_subject", -1), ("max_streams_per_worker", -1), ("stream_connect_rate", -1),
    ("stream_connect_burst", -1), ("connections_per_address", -1),
    ("client_header_timeout_seconds", 0), ("client_body_timeout_seconds", 0),
    ("send_timeout_seconds", 0),
])
def test_meaningless_limits_are_refused(field, value):
    base = Config.from_env(SECRETS)
    with pytest.raises(ConfigError):
        dataclasses.replace(base, **{field: value})


def test_production_refuses_a_long_secret_of_few_characters():
    strong = secrets.token_urlsafe(32)
    for weak in ("a" * 64, "ab" * 20, "012345678" * 5):
        with pytest.raises(ConfigError):
            Config(secret_keys=(weak,), publish_keys=(strong,), environment="production")
    Config(secret_keys=(strong,), publish_keys=(secrets.token_urlsafe(32),),
           environment="production")
