"""Fixtures for the security tests: one deployed stack for the whole package (a restricted
publisher key, an old signing key still verifying, CORS for one origin), and a register of every
secret the tests used, so that test_secrets_in_logs can look for each of them in every log."""

from __future__ import annotations

import secrets

import pytest

from eventgate.shared.config import Config
from eventgate.shared.tokens import ChannelTokens
from eventgate.web.app import create_app
from tests.security.secured import ORIGIN, RESTRICTED_SCOPE, SecretRegister, Secured
from tests.stack import Stack


@pytest.fixture(scope="session")
def secret_register() -> SecretRegister:
    return SecretRegister()


@pytest.fixture(scope="package")
def secured(tmp_path_factory, secret_register) -> Secured:
    restricted_key = secrets.token_urlsafe(32)
    old_secret = secrets.token_urlsafe(32)
    stack = Stack(
        tmp_path_factory.mktemp("secured"),
        stream_workers=2,
        settings={
            "EVENTGATE_HEARTBEAT": "1",
            "EVENTGATE_CORS_ORIGINS": ORIGIN,
            "EVENTGATE_MAX_STREAMS_PER_SUBJECT": "4",
        },
        more_publish_keys=(f"{restricted_key}:{'+'.join(RESTRICTED_SCOPE)}",),
        more_secret_keys=(old_secret,),
    ).start()
    secret_register.add(stack.publish_key, stack.secret_key, restricted_key, old_secret)
    yield Secured(
        stack=stack,
        restricted_key=restricted_key,
        old_secret=old_secret,
        tokens=ChannelTokens([stack.secret_key]),
        old_tokens=ChannelTokens([old_secret]),
    )
    stack.stop()


@pytest.fixture
def make_secure_stack(make_stack, secret_register):
    """``make_stack`` whose keys go into the secret register."""

    def make(**options) -> Stack:
        stack = make_stack(**options)
        secret_register.add(stack.publish_key, stack.secret_key)
        return stack

    return make


@pytest.fixture
def unique() -> str:
    """A fresh name part, so that tests never share channels."""
    return secrets.token_hex(4)


@pytest.fixture(scope="module")
def stack_tokens(stack, secret_register) -> ChannelTokens:
    """Signs tokens for the module's ``stack``, whose keys go into the secret register."""
    secret_register.add(stack.publish_key, stack.secret_key)
    return ChannelTokens(stack.config.secret_keys)


@pytest.fixture(scope="module")
def fuzz_app(redis_server, tmp_path_factory):
    """(app, publisher key, restricted key): the web app on the session's redis, with small
    event limits and a key restricted to RESTRICTED_SCOPE."""
    key, restricted = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    config = Config(
        secret_keys=(secrets.token_urlsafe(32),),
        publish_keys=(key, f"{restricted}:{'+'.join(RESTRICTED_SCOPE)}"),
        redis_url=redis_server.url, redis_port=redis_server.port,
        var_dir=tmp_path_factory.mktemp("fuzz") / "var", max_event_bytes=2048,
    )
    return create_app(config), key, restricted
