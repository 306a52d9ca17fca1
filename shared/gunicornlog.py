"""JsonLogger: gunicorn's own log lines (errors, and the web pool's access log) as JSON lines.

Chosen by the pools' gunicorn config files when ``EVENTGATE_LOG_FORMAT=json``. The access
line holds the path without its query string (it may carry a token), the status, the size, the
duration and the ``X-Request-ID`` nginx passed — the same id as the app's own lines.
"""

from __future__ import annotations

import json
import logging

from gunicorn.glogging import Logger

from shared.config import Config
from shared.errors import ConfigError
from shared.logformat import JsonFormatter, clean_request_id


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


def logger_class_from_env() -> str | None:
    """The ``logger_class`` a pool's gunicorn config sets: JsonLogger when the environment asks
    for JSON lines, else None (gunicorn's own). A refused configuration falls back to text: the
    master only starts; the workers say what is wrong (see ``refuse_bad_config``)."""
    try:
        log_format = Config.from_env().log_format
    except ConfigError:
        return None
    return "shared.gunicornlog.JsonLogger" if log_format == "json" else None
