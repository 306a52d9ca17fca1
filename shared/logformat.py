"""Log lines for both apps and for gunicorn's access log: text (the default) or JSON lines,
each with the request's id.

nginx gives every request an ``X-Request-ID`` (the caller's, or one it makes) and passes it to
both apps; the apps put it in a context variable for the request (``bind_request_id``), and
every log line written meanwhile carries it, so one id finds a request in nginx's access log
and in the app's log. Under gevent each request runs in its own greenlet, with its own context.

Threat: the header comes from the client. Only a plain id (letters, digits, ``._:-``, at most
128 characters) is kept; anything else becomes ``-``, so a header cannot forge log lines. Log
lines never carry a token, a key or a query string: callers log paths, never URLs.

gunicorn's access line is built here too: ``LazyAtoms`` (the text line's atoms) and
``json_access_line``, from the request and response gunicorn hands its logger. The loggers that
write them are in shared/pools.py, since they subclass gunicorn's Logger: this module imports no
gunicorn, because the apps log through it also when no gunicorn runs them (tests, ``flask run``,
a publishing-only install).
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
from collections.abc import Callable
from contextvars import ContextVar
from datetime import timedelta
from typing import Protocol

NO_REQUEST = "-"
_REQUEST_ID: ContextVar[str] = ContextVar("eventgate_request_id", default=NO_REQUEST)
_PLAIN_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_HANDLER_MARK = "_eventgate_handler"
TEXT_FORMAT = "%(asctime)s [%(process)d] %(levelname)s %(name)s [%(request_id)s] %(message)s"

# Attributes every LogRecord has: the JSON formatter puts only the others (a caller's
# ``extra=``) into the line.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


def clean_request_id(value: str | None) -> str:
    """``value`` if it is a plain id, else ``-``."""
    return value if value and _PLAIN_ID.fullmatch(value) else NO_REQUEST


def bind_request_id(value: str | None) -> str:
    """Make ``value`` (cleaned) the id of every line logged in this context; returns it."""
    request_id = clean_request_id(value)
    _REQUEST_ID.set(request_id)
    return request_id


def current_request_id() -> str:
    return _REQUEST_ID.get()


class RequestIdFilter(logging.Filter):
    """Adds ``record.request_id`` (the current request's id, or ``-``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = _REQUEST_ID.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, pid, request_id, message, extras, exc."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "ts": _iso(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "pid": record.process,
            "request_id": getattr(record, "request_id", _REQUEST_ID.get()),
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in line:
                line[key] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str, separators=(",", ":"))


def formatter(log_format: str) -> logging.Formatter:
    """The formatter for ``log_format`` ("text" or "json")."""
    return JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)


def configure(log_format: str, level: int = logging.INFO) -> None:
    """Send the root logger's records to stderr in ``log_format``; safe to call again (the
    handler is replaced, never added twice). Loggers of the apps propagate to it."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, _HANDLER_MARK, False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    setattr(handler, _HANDLER_MARK, True)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(formatter(log_format))
    root.addHandler(handler)
    if root.level == logging.NOTSET or root.level > level:
        root.setLevel(level)


def _iso(created: float) -> str:
    milliseconds = int(created % 1 * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + f".{milliseconds:03d}Z"


def json_access_line(resp, environ: dict, took: timedelta, now: str) -> str:  # noqa: ANN001
    """gunicorn's access line as JSON: the path without its query string (it may carry a token),
    the status, the size, the duration and nginx's ``X-Request-ID`` — the same id as the app's
    own lines. ``resp`` is gunicorn's Response, ``now`` its logger's ``now()``."""
    line = {
        "ts": now.strip("[]"),
        "level": "info",
        "logger": "gunicorn.access",
        "request_id": clean_request_id(environ.get("HTTP_X_REQUEST_ID")),
        "method": environ.get("REQUEST_METHOD"),
        "path": environ.get("PATH_INFO"),
        "status": resp.status_code if hasattr(resp, "status_code") else str(resp.status)[:3],
        "bytes": getattr(resp, "sent", None),
        "duration_ms": round(took.total_seconds() * 1000, 3),
    }
    return json.dumps(line, separators=(",", ":"), default=str)


# The text access line. gunicorn's own ``Logger.access`` builds every atom it knows for every
# request — one per request header, response header and environ key, each copied with its
# quotes escaped — to fill the handful the format uses (docs/performance.md has the cost).
# LazyAtoms gives the same values, each computed when the format names it
# (tests/unit/test_pools.py compares them with gunicorn's, atom by atom).


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


class AccessLogger(Protocol):
    """What LazyAtoms needs of the logger writing the line (gunicorn's ``glogging.Logger``)."""

    def now(self) -> str: ...

    def _get_user(self, environ: dict) -> str | None: ...


class LazyAtoms(dict):
    """gunicorn's ``SafeAtoms`` for one request, each atom computed when the format asks for it:
    the same values (strings with ``"`` escaped), ``{name}i``/``o``/``e`` case-insensitive, and
    ``-`` for anything unknown."""

    def __init__(self, logger: AccessLogger, resp, req, environ: dict, took: timedelta) -> None:  # noqa: ANN001
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
