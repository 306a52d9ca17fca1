"""The pools' gunicorn loggers (shared/pools.py): TextLogger's access line is gunicorn's own —
every atom gunicorn knows, and the deployed format, compared with what gunicorn's
``Logger.atoms`` + ``SafeAtoms`` give for the same request — and the class named for gunicorn
is one it can load."""

from __future__ import annotations

import json
import logging
from datetime import timedelta

import pytest
from gunicorn.config import Config
from gunicorn.glogging import Logger

from eventgate.shared.logformat import LazyAtoms
from eventgate.shared.pools import JsonLogger, TextLogger, logger_class_from_env

DEPLOYED_FORMAT = '%(t)s %({x-request-id}i)s "%(m)s %(U)s %(H)s" %(s)s %(b)s %(M)sms'


class _Request:
    """What gunicorn's Request offers the logger: its headers, upper-case names, in order."""

    headers = [
        ("HOST", "127.0.0.1:8000"), ("AUTHORIZATION", "Basic dXNlcjpwYXNz"),
        ("X-REQUEST-ID", "first"), ("X-REQUEST-ID", 'se"cond'), ("USER-AGENT", 'curl "8"'),
    ]


class _Response:
    status = "201 CREATED"
    sent = 31
    headers = [("Content-Type", "application/json"), ("Content-Length", "31")]


ENVIRON = {
    "REQUEST_METHOD": "POST", "RAW_URI": "/api/events?x=1", "SERVER_PROTOCOL": "HTTP/1.1",
    "PATH_INFO": "/api/events", "QUERY_STRING": "x=1", "REMOTE_ADDR": "127.0.0.1",
    "HTTP_AUTHORIZATION": "Basic dXNlcjpwYXNz", "HTTP_USER_AGENT": 'curl "8"',
    "HTTP_X_REQUEST_ID": 'se"cond', "wsgi.version": (1, 0), "EMPTY": None,
}
TOOK = timedelta(seconds=2, microseconds=34567)


def _logger(cls: type[Logger]) -> Logger:
    logger = cls(Config())
    logger.now = lambda: "[01/Dec/2026:04:05:06 +0000]"  # one instant for both
    return logger


def _gunicorns(resp: object = _Response) -> dict:
    gunicorn = _logger(Logger)
    return gunicorn.atoms_wrapper_class(gunicorn.atoms(resp, _Request, ENVIRON, TOOK))


def _lazy(resp: object = _Response) -> LazyAtoms:
    return LazyAtoms(_logger(TextLogger), resp, _Request, ENVIRON, TOOK)


def test_every_atom_gunicorn_knows_has_its_value() -> None:
    expected = _gunicorns()
    lazy = _lazy()
    assert len(expected) > 25  # the fixed atoms, and one per header and environ key
    for key in expected:
        assert lazy[key] == expected[key], key


@pytest.mark.parametrize("key", [
    "{X-Request-Id}i", "{content-type}O", "{PATH_INFO}e", "{nope}i", "{nope}o", "{nope}e",
    "{host}x", "{host", "{}i", "z", "S", "{empty}e",
])
def test_unknown_and_mixed_case_keys_as_gunicorn(key: str) -> None:
    assert _lazy()[key] == _gunicorns()[key]


def test_response_without_a_size_or_with_a_numeric_status() -> None:
    class Unsent(_Response):
        sent = None
        status = 204

    for key in ("b", "B", "s"):
        assert _lazy(Unsent)[key] == _gunicorns(Unsent)[key]


@pytest.mark.parametrize("fmt", [DEPLOYED_FORMAT, Config().access_log_format])
def test_the_written_line_is_gunicorns(fmt: str, tmp_path) -> None:  # noqa: ANN001
    lines = {}
    for cls in (Logger, TextLogger):
        cfg = Config()
        cfg.set("accesslog", str(tmp_path / f"{cls.__name__}.log"))
        cfg.set("access_log_format", fmt)
        logger = cls(cfg)
        logger.now = lambda: "[01/Dec/2026:04:05:06 +0000]"
        logger.access(_Response, _Request, ENVIRON, TOOK)
        for handler in logger.access_log.handlers:
            handler.flush()
        lines[cls] = (tmp_path / f"{cls.__name__}.log").read_text()
        logging.getLogger("gunicorn.access").handlers.clear()
    assert lines[TextLogger] == lines[Logger]
    assert 'se\\"cond' in lines[TextLogger] or fmt != DEPLOYED_FORMAT


def test_the_json_access_line(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    # JsonLogger formats every handler of gunicorn's loggers, pytest's own capture too: give it
    # empty lists, put back afterwards.
    for name in ("gunicorn.access", "gunicorn.error"):
        monkeypatch.setattr(logging.getLogger(name), "handlers", [])
    cfg = Config()
    cfg.set("accesslog", str(tmp_path / "access.log"))
    logger = _logger(JsonLogger)
    logger.setup(cfg)
    logger.access(_Response, _Request, ENVIRON, TOOK)
    for handler in logger.access_log.handlers + logger.error_log.handlers:
        handler.close()
    assert json.loads((tmp_path / "access.log").read_text()) == {
        "ts": "01/Dec/2026:04:05:06 +0000", "level": "info", "logger": "gunicorn.access",
        "request_id": "-",  # 'se"cond' is no plain id
        "method": "POST", "path": "/api/events",  # never the query string: it may hold a token
        "status": "201", "bytes": 31, "duration_ms": 2034.567,
    }


def _loaded_by_gunicorn(name: str) -> type:
    """The class gunicorn's ``logger_class`` setting resolves ``name`` to."""
    cfg = Config()
    cfg.set("logger_class", name)
    return cfg.logger_class


def test_text_unless_json_is_asked_for(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:  # noqa: ANN001
    monkeypatch.setenv("EVENTGATE_VAR_DIR", str(tmp_path))
    monkeypatch.setenv("EVENTGATE_SECRET_KEY", "k" * 20 + "0123456789abcdef")
    monkeypatch.setenv("EVENTGATE_PUBLISH_KEY", "p" * 20 + "0123456789abcdef")
    monkeypatch.setenv("EVENTGATE_LOG_FORMAT", "json")
    assert logger_class_from_env() == "eventgate.shared.pools.JsonLogger"
    assert _loaded_by_gunicorn(logger_class_from_env()) is JsonLogger
    monkeypatch.setenv("EVENTGATE_LOG_FORMAT", "text")
    assert logger_class_from_env() == "eventgate.shared.pools.TextLogger"
    assert _loaded_by_gunicorn(logger_class_from_env()) is TextLogger
    monkeypatch.setenv("EVENTGATE_LOG_FORMAT", "xml")  # refused: the workers will say so
    assert logger_class_from_env() == "eventgate.shared.pools.TextLogger"
