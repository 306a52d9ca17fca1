"""Fixtures for the command-line tests: ``make_app``, a user's Flask app with an EventGate in an
environment whose EVENTGATE_* settings point elsewhere (the session's redis, configs and
``run_cli`` are in tests/conftest.py)."""

from __future__ import annotations

import secrets

import pytest
from flask import Flask

from eventgate.web.extension import EventGate
from tests.servers import free_port


@pytest.fixture
def make_app(make_config, monkeypatch):
    """``make_app(**config overrides)``: a user's Flask app with an EventGate. The environment
    holds other settings (a dead Redis, another secret): a command that read it would fail."""
    monkeypatch.setenv("EVENTGATE_REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    monkeypatch.setenv("EVENTGATE_SECRET_KEY", secrets.token_urlsafe(32))
    monkeypatch.setenv("EVENTGATE_PUBLISH_KEY", secrets.token_urlsafe(32))

    def make(**overrides) -> Flask:
        app = Flask(__name__)
        EventGate(app, config=make_config(**overrides))
        return app

    return make
