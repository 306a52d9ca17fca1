"""Fixtures for the command-line tests: ``make_app``, a user's Flask app with an EventGate in an
environment whose EVENTGATE_* settings point elsewhere; ``start_relay``, ``eventgate relay`` as a
program, and ``outbox`` on a SQLite ``database`` for it to relay; ``nginx_variant``, a second
nginx in front of the module's stack from an edited copy of its config (``eventgate doctor``'s
broken proxies) (the session's redis, configs, ``run_cli``, ``test_ca`` and ``stack_edge`` are
in tests/conftest.py)."""

from __future__ import annotations

import secrets
import sys

import pytest
from flask import Flask
from sqlalchemy import create_engine

from eventgate.shared.outbox import Outbox
from eventgate.web.extension import EventGate
from tests.cli.nginxvariants import Edits, start_variant
from tests.servers import Program, child_env, eventgate_env, free_port


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


@pytest.fixture
def start_relay(make_program, secret_keys, publish_key, redis_server, tmp_path):
    """``start_relay(database_url, *options, **settings)``: ``eventgate relay`` as a program
    (stopped after the test) on the session's redis, writing its status record every 0.2 s;
    ``settings`` are EVENTGATE_* overrides (``redis_url=…``); ``name`` names its log."""

    def start(database: str, *options: str, name: str = "relay", **settings: str) -> Program:
        env = eventgate_env(secret_keys, publish_key, redis_server.url, tmp_path / "var",
                            **{"status_interval": "0.2", **settings})
        argv = [sys.executable, "-m", "eventgate.cli", "relay", "--database", database, *options]
        return make_program(argv, name, env=child_env(**env))

    return start


@pytest.fixture
def database(tmp_path) -> str:
    """The URL of a SQLite file of the test's own, for an outbox."""
    return f"sqlite:///{tmp_path / 'outbox.db'}"


@pytest.fixture
def outbox(database, publisher):
    """The app's side of ``eventgate relay``: an Outbox on ``database`` (its table created)."""
    engine = create_engine(database)
    box = Outbox(engine, publisher)
    box.create_tables()
    yield box
    engine.dispose()


@pytest.fixture(scope="module")
def nginx_variant(stack, tmp_path_factory):
    """``nginx_variant(name, edits, listen_options="")``: the base URL of a second nginx in
    front of the module's stack's pools, its config the stack's own with ``edits``
    (tests/cli/nginxvariants.py); started once per name for the module, stopped at its end."""
    started: dict[str, tuple[Program, str]] = {}
    root = tmp_path_factory.mktemp("nginx-variants")

    def variant(name: str, edits: Edits, listen_options: str = "") -> str:
        if name not in started:
            nginx = start_variant(stack, root / name, edits, listen_options)
            scheme = "https" if "ssl" in listen_options else "http"
            started[name] = (nginx, f"{scheme}://127.0.0.1:{nginx.port}")
        return started[name][1]

    yield variant
    for nginx, _ in started.values():
        nginx.stop()

