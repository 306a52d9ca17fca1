"""Log lines for both apps: text (the default) or JSON lines, each with the request's id.

nginx gives every request an ``X-Request-ID`` (the caller's, or one it makes) and passes it to
both apps; the apps put it in a context variable for the request (``bind_request_id``), and
every log line written meanwhile carries it, so one id finds a request in nginx's access log
and in the app's log. Under gevent each request runs in its own greenlet, with its own context.

Threat: the header comes from the client. Only a plain id (letters, digits, ``._:-``, at most
128 characters) is kept; anything else becomes ``-``, so a header cannot forge log lines. Log
lines never carry a token, a key or a query string: callers log paths, never URLs.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from contextvars import ContextVar

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
