"""The pools' gunicorn loggers: the access line's atoms computed only when the format names them,
and JSON lines when ``EVENTGATE_LOG_FORMAT=json``.

gunicorn's own ``Logger.access`` builds every atom it knows for every request — one per
request header, response header and environ key, each copied with its quotes escaped — to fill
the handful the format uses: ≈26 µs of a publish request's ≈400 µs of web worker CPU here.
``TextLogger`` writes the same line from the same atoms, each computed on demand
(tests/unit/test_gunicornlog.py compares them with gunicorn's, atom by atom).

The JSON access line holds the path without its query string (it may carry a token), the
status, the size, the duration and the ``X-Request-ID`` nginx passed — the same id as the app's
own lines.
"""

from __future__ import annotations

import json
import logging
import os
import traceback
from collections.abc import Callable
from datetime import timedelta

from gunicorn.glogging import Logger

from eventgate.shared.config import Config
from eventgate.shared.errors import ConfigError
from eventgate.shared.logformat import JsonFormatter, clean_request_id


def _status(resp, req, environ, took: timedelta) -> object:  # noqa: ANN001
    status = resp.status
    return status.split(None, 1)[0] if isinstance(status, str) else status


def _sent(resp, req, environ, took: timedelta) -> str:  # noqa: ANN001
    return getattr(resp, "sent", None) is not None and str(resp.sent) or "-"


# gunicorn's atoms (glogging.Logger.atoms) by name, each a function of the request. ``u`` and
# ``t`` need the logger: see LazyAtoms.
_ATOMS: dict[str, Callable[..., object]] = {
    "h": lambda resp, req, environ, took: environ.get("REMOTE_ADDR", "-"),
    "l": lambda resp, req, environ, took: "-",
    "r": lambda resp, req, environ, took: (
        f"{environ['REQUEST_METHOD']} {environ['RAW_URI']} {environ['SERVER_PROTOCOL']}"),
    "s": _status,
    "m": lambda resp, req, environ, took: environ.get("REQUEST_METHOD"),
    "U": lambda resp, req, environ, took: environ.get("PATH_INFO"),
    "q": lambda resp, req, environ, took: environ.get("QUERY_STRING"),
    "H": lambda resp, req, environ, took: environ.get("SERVER_PROTOCOL"),
    "b": _sent,
    "B": lambda resp, req, environ, took: getattr(resp, "sent", None),
    "f": lambda resp, req, environ, took: environ.get("HTTP_REFERER", "-"),
    "a": lambda resp, req, environ, took: environ.get("HTTP_USER_AGENT", "-"),
    "T": lambda resp, req, environ, took: took.seconds,
    "D": lambda resp, req, environ, took: took.seconds * 1000000 + took.microseconds,
    "M": lambda resp, req, environ, took: took.seconds * 1000 + int(took.microseconds / 1000),
    "L": lambda resp, req, environ, took: f"{took.seconds}.{took.microseconds:06d}",
    "p": lambda resp, req, environ, took: f"<{os.getpid()}>",
}


_MISSING = object()


def _last(source, name: str) -> object:  # noqa: ANN001 - gunicorn's request, header list or mapping
    """The value of the last entry called ``name`` (lower case), as gunicorn's dict keeps it."""
    if hasattr(source, "headers"):
        source = source.headers
    pairs = source.items() if hasattr(source, "items") else source
    found: object = _MISSING
    for key, value in pairs:
        if key.lower() == name:
            found = value
    return found


class LazyAtoms(dict):
    """gunicorn's ``SafeAtoms`` for one request, each atom computed when the format asks for it:
    the same values (strings with ``"`` escaped), ``{name}i``/``o``/``e`` case-insensitive, and
    ``-`` for anything unknown."""

    def __init__(self, logger: Logger, resp, req, environ: dict, took: timedelta) -> None:  # noqa: ANN001
        super().__init__()
        self.logger = logger
        self.request = (resp, req, environ, took)

    def __bool__(self) -> bool:
        # logging takes a lone argument as the %-format's mapping only when it is truthy.
        return True

    def __getitem__(self, key: str) -> object:
        value = self._value(key)
        return value.replace('"', '\\"') if isinstance(value, str) else value

    def _value(self, key: str) -> object:
        resp, req, environ, took = self.request
        if key.startswith("{"):
            name, _, kind = key.lower()[1:].rpartition("}")
            source = {"i": req, "o": resp.headers, "e": environ}.get(kind)
            found = _MISSING if source is None else _last(source, name)
            return "-" if found is _MISSING else found
        if key == "u":
            return self.logger._get_user(environ) or "-"
        if key == "t":
            return self.logger.now()
        atom = _ATOMS.get(key)
        return "-" if atom is None else atom(resp, req, environ, took)


class TextLogger(Logger):
    """gunicorn's Logger, its access line written from LazyAtoms (the same line, less work)."""

    def access(self, resp, req, environ, request_time) -> None:  # noqa: ANN001 - gunicorn's
        if not self.access_log_enabled:
            return
        try:
            self.access_log.info(self.cfg.access_log_format,
                                 LazyAtoms(self, resp, req, environ, request_time))
        except Exception:  # noqa: BLE001 - as gunicorn's: a bad format must not fail the request
            self.error(traceback.format_exc())


class _MessageOnly(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return record.getMessage()


class JsonLogger(Logger):
    """gunicorn's Logger with JSON formatting for both of its logs."""

    def setup(self, cfg) -> None:  # noqa: ANN001 - gunicorn's Config
        super().setup(cfg)
        for handler in self.error_log.handlers:
            handler.setFormatter(JsonFormatter())
        for handler in self.access_log.handlers:
            handler.setFormatter(_MessageOnly())

    def access(self, resp, req, environ, request_time) -> None:  # noqa: ANN001
        if not self.access_log_enabled:
            return
        line = {
            "ts": self.now().strip("[]"),
            "level": "info",
            "logger": "gunicorn.access",
            "request_id": clean_request_id(environ.get("HTTP_X_REQUEST_ID")),
            "method": environ.get("REQUEST_METHOD"),
            "path": environ.get("PATH_INFO"),
            "status": resp.status_code if hasattr(resp, "status_code") else str(resp.status)[:3],
            "bytes": getattr(resp, "sent", None),
            "duration_ms": round(request_time.total_seconds() * 1000, 3),
        }
        self.access_log.info(json.dumps(line, separators=(",", ":"), default=str))


def logger_class_from_env() -> str:
    """The ``logger_class`` a pool's gunicorn config sets: JsonLogger when the environment asks
    for JSON lines, else TextLogger. A refused configuration falls back to text: the master only
    starts; the workers say what is wrong (see ``refuse_bad_config``)."""
    try:
        log_format = Config.from_env().log_format
    except ConfigError:
        log_format = "text"
    return f"eventgate.shared.gunicornlog.{'JsonLogger' if log_format == 'json' else 'TextLogger'}"
