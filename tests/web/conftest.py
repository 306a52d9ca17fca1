"""Fixtures for the web app: the app on the session's real redis, its client (through the publish
fast path) and one of the same app without it (the Flask view alone), the publisher key, and
``make_app``, the app with test views that publish and then fail or succeed."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from flask import Flask, abort, jsonify, request, request_started
from flask.testing import FlaskClient
from flask_sqlalchemy import SQLAlchemy

from eventgate.shared import keys
from eventgate.shared.events import Event
from eventgate.shared.publisher import Publisher
from eventgate.shared.redisconn import connect
from eventgate.web import health, metrics
from eventgate.web.api.fastpath import FastPublish
from eventgate.web.app import create_app
from eventgate.web.extension import EventGate, current_eventgate
from tests.servers import LOOPBACK, Program, free_port, port_open, venv_tool

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def app(make_config):
    return create_app(make_config())


@pytest.fixture
def client(app):
    return app.test_client()


def without_fast_path(app: Flask) -> Flask:
    """An app of the same config without the publish fast path: what the Flask view answers."""
    assert isinstance(app.wsgi_app, FastPublish)
    plain = create_app(app.extensions["eventgate"].config)
    plain.wsgi_app = plain.wsgi_app.wsgi_app
    return plain


@pytest.fixture
def view_client(app):
    """A client of ``app``'s config without the publish fast path."""
    return without_fast_path(app).test_client()


@pytest.fixture
def publish_clients(make_config):
    """Factory: ``publish_clients(**config_overrides)`` → ``{"fast": …, "view": …}``, clients of
    an app on the session's redis with the publish fast path and of one without it."""

    def make(**overrides) -> dict[str, FlaskClient]:
        app = create_app(make_config(**overrides))
        return {"fast": app.test_client(), "view": without_fast_path(app).test_client()}

    return make


class Boom(Exception):
    """What ``make_app``'s view raises after publishing."""


@pytest.fixture
def make_app(make_config):
    """Factory: the web app plus test views that publish to ``channel`` and then end as told."""

    def make(channel: str, **overrides) -> Flask:
        app = create_app(make_config(**overrides))

        @app.post("/t/<outcome>")
        def publish_then(outcome: str):
            gate = current_eventgate()
            assert gate.publish(channel, {"n": 1}, "first") is None  # queued, not sent
            gate.publish(channel, {"n": 2}, "second")
            if outcome == "raise":
                raise Boom("the view failed after publishing")
            if outcome == "abort":
                abort(409)
            if outcome == "500":
                return jsonify(status="failed"), 500
            if outcome == "400":
                return jsonify(status="refused"), 400
            if outcome == "redirect":
                return "", 302, {"Location": "/"}
            return jsonify(status="ok"), 200

        @app.post("/bad-name")
        def bad_name():
            current_eventgate().publish(channel, 1)
            current_eventgate().publish("not valid", 1)
            return "unreachable"

        return app

    return make


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


@pytest.fixture
def flask_calls(app):
    """Requests Flask itself handled (its request_started signal)."""
    seen: list[str] = []

    def record(sender, **extra) -> None:  # noqa: ANN001 - blinker's signature
        seen.append(request.path)

    request_started.connect(record, app)
    yield seen
    request_started.disconnect(record, app)


@pytest.fixture
def publisher_for_cli(make_config) -> Callable[[str, int], list[str]]:
    """``publisher_for_cli(channel, count)``: publishes ``{"n": 0}`` … ``{"n": count - 1}`` as
    ``tick`` events in batches of 500; their ids, in order."""
    config = make_config()
    publisher = Publisher(connect(config), config)

    def publish(channel: str, count: int) -> list[str]:
        ids: list[str] = []
        for start in range(0, count, 500):
            ids += publisher.publish_many(
                [publisher.draft(channel, {"n": n}, "tick")
                 for n in range(start, min(count, start + 500))]
            )
        return ids

    return publish


@pytest.fixture
def make_gunicorn(make_program, tmp_path) -> Callable[..., Program]:
    """Factory: ``make_gunicorn(worker_class, threads)`` serves tests/web/threadapp.py with one
    worker of that class on a free port (kept-alive connections, as behind nginx)."""

    def make(worker_class: str = "eventgate.web.worker.WebWorker", threads: int = 4) -> Program:
        port = free_port()
        program = make_program([
            venv_tool("gunicorn"), "tests.web.threadapp:app", "--bind", f"{LOOPBACK}:{port}",
            "--workers", "1", "--worker-class", worker_class, "--threads", str(threads),
            "--keep-alive", "30", "--timeout", "30", "--graceful-timeout", "5",
            "--control-socket", str(tmp_path / f"gunicorn-{port}.ctl"),
        ], f"gunicorn-{port}", port=port, cwd=ROOT)
        program.wait_until(lambda: port_open(port), 15, "gunicorn")
        return program

    return make


@pytest.fixture
def make_outbox_app(make_config, tmp_path, monkeypatch):
    """``make_outbox_app(**config overrides)``: an app of yours embedding ``EventGate(app,
    db=db)`` (SQLite, its outbox table created) with web.metrics and the health probes, its
    metrics in a registry of its own (not gunicorn's multiprocess mode)."""
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    engines = []

    def make(**overrides) -> Flask:
        app = Flask(__name__)
        app.config["SQLALCHEMY_DATABASE_URI"] = f"sqlite:///{tmp_path / f'app{len(engines)}.db'}"
        gate = EventGate(app, make_config(**overrides), db=SQLAlchemy(app))
        metrics.init_app(app)
        app.register_blueprint(health.bp)
        gate.outbox.create_tables()
        engines.append(gate.outbox.engine)
        return app

    yield make
    for engine in engines:
        engine.dispose()
