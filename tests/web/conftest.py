"""Fixtures for the web app: the app on the session's real redis, its client, the publisher key."""

from __future__ import annotations

import pytest

from eventgate.shared import keys
from eventgate.shared.events import Event
from eventgate.web.app import create_app
from tests.servers import free_port


@pytest.fixture
def app(make_config):
    return create_app(make_config())


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def auth(publish_key) -> dict[str, str]:
    """Headers that carry the publisher key."""
    return {"Authorization": f"Bearer {publish_key}"}


@pytest.fixture
def read_log(redis_server):
    """``read_log(channel)``: every event stored in the channel's log, oldest first (XRANGE)."""
    client = redis_server.client()

    def read(channel: str) -> list[Event]:
        entries = client.xrange(keys.log_key(channel))
        return [Event.from_entry(channel, entry_id, fields) for entry_id, fields in entries]

    return read


@pytest.fixture
def dead_redis_url() -> str:
    """A redis URL on a loopback port where nothing listens: connections are refused at once."""
    return f"redis://127.0.0.1:{free_port()}/0"
