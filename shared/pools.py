"""What both gunicorn pools share: their loggers, the JSON error page, the bad-config refusal,
Prometheus's multiprocess directory with its hooks, and a quick process exit.

The one module of shared/ that imports gunicorn or prometheus_client (tests/unit/test_layering.py
keeps it so): the apps' own modules and a publishing-only install never need either.

**Loggers.** ``TextLogger`` writes gunicorn's own access line from ``LazyAtoms``
(shared/logformat.py: each atom computed only when the format names it); ``JsonLogger`` writes
JSON lines for both of gunicorn's logs when ``EVENTGATE_LOG_FORMAT=json``. They live here, not
beside the line formats, because they subclass gunicorn's Logger.

**Error page.** nginx passes some requests that gunicorn's stricter parser then refuses — a
control character in a header value, for one — and gunicorn would answer with its own HTML page,
breaking the contract that every error is JSON. Both pools' gunicorn configs call
``install_json_errors()``, which replaces the page writer gunicorn's workers call
(``gunicorn.util.write_error``; gunicorn is pinned, <28, and tests/security checks the answers
through nginx). The answer never repeats the request, which may hold a token.

**Prometheus.** Under gunicorn every worker is its own process, so a metric kept in one worker's
memory shows a different number on every scrape. prometheus-client's multiprocess mode has each
process write its values to small mmap files in ``PROMETHEUS_MULTIPROC_DIR`` (set per program by
the supervisor template, under ``var/metrics/``) and sums the files at scrape time. The variable
must be set before prometheus-client is first imported, which is why the environment, not code,
sets it. Without it (tests, a single process) each app keeps its metrics in its own registry.
The master's hooks clean the directory when the pool starts and forget a worker's live gauges
when it exits (``mark_process_dead``); counters of dead workers stay, so totals never go back.
Exposition is meant for loopback scrapers only: ``is_proxied`` lets the apps refuse a scrape
that came through nginx (the public server also answers 404 for /metrics itself).

**Exit.** A pool process that has finished its work (a worker after its ``worker_exit`` hook,
the master in ``on_exit``) would spend the interpreter's final garbage collections on a heap the
OS takes back anyway: 0.1-0.3 s of CPU per process on every stop, deploy and test (measured
with bench/pool_stop.py). ``exit_without_collecting`` freezes the heap instead (``gc.freeze``):
atexit handlers still run, files and logs are still flushed, what refcounting frees is still
freed; only the cycle collector leaves the frozen objects alone.

**Hook handles.** A pool's gunicorn hooks find what they start and stop in the loaded app's
``app.extensions`` under the keys below: the conf modules cannot import the app modules that
register them (the master must stay light), so both sides take the key from here.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import socket
import traceback
from collections.abc import Mapping
from pathlib import Path

from gunicorn import util
from gunicorn.errors import AppImportError
from gunicorn.glogging import Logger
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess

from eventgate.shared.config import Config
from eventgate.shared.errors import ConfigError
from eventgate.shared.logformat import JsonFormatter, LazyAtoms, json_access_line

# --- hook handles

#: ``app.extensions`` key of a stream worker's StreamState (stream/state.py).
STREAM_STATE_KEY = "eventgate.stream"
#: ``app.extensions`` key of a web app's unstarted StatusFeed (web/ops.py).
STATUS_FEED_KEY = "eventgate.statusfeed"

# --- loggers


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
        self.access_log.info(json_access_line(resp, environ, request_time, self.now()))


def logger_class_from_env() -> str:
    """The ``logger_class`` a pool's gunicorn config sets (gunicorn takes a dotted name):
    JsonLogger when the environment asks for JSON lines, else TextLogger. A refused
    configuration falls back to text: the master only starts; the workers say what is wrong
    (see ``refuse_bad_config``)."""
    try:
        log_format = Config.from_env().log_format
    except ConfigError:
        log_format = "text"
    chosen = JsonLogger if log_format == "json" else TextLogger
    return f"{chosen.__module__}.{chosen.__qualname__}"


# --- gunicorn's own error answers, and a configuration it must not run

_CODES = {
    400: "bad_request",
    403: "forbidden",
    414: "uri_too_long",
    417: "expectation_failed",
    431: "request_header_fields_too_large",
    500: "internal_error",
}


def write_json_error(sock: socket.socket, status_int: int, reason: str, mesg: str) -> None:
    """gunicorn's ``write_error`` signature; ``mesg`` (which may quote the request) is dropped."""
    body = json.dumps({
        "error": _CODES.get(status_int, "bad_request"),
        "message": f"the server refused the request before reading it: {reason.lower()}.",
    }) + "\n"
    head = (
        f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    util.write_nonblock(sock, (head + body).encode("latin-1"))


def install_json_errors() -> None:
    """Make gunicorn's own error answers JSON (call it from a gunicorn config file)."""
    util.write_error = write_json_error


def refuse_bad_config() -> Config:
    """``Config.from_env()`` for a pool's ``wsgi.py``; a configuration gunicorn must not run (a
    production start with a missing or weak secret) halts the master with one line saying why
    (gunicorn prints an AppImportError's message alone, exit status 4), not a traceback per
    worker."""
    try:
        return Config.from_env()
    except ConfigError as error:
        raise AppImportError(f"eventgate: {error}") from None


# --- Prometheus

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def multiprocess_dir(environ: Mapping[str, str] | None = None) -> Path | None:
    """The multiprocess directory when multiprocess mode is on, else None."""
    value = (os.environ if environ is None else environ).get(MULTIPROC_ENV)
    return Path(value) if value else None


def app_registry() -> CollectorRegistry | None:
    """Where an app registers its metrics: None in multiprocess mode (the values live in the
    shared files and are collected from there), else a fresh registry of its own."""
    return None if multiprocess_dir() else CollectorRegistry(auto_describe=True)


def exposition(registry: CollectorRegistry | None) -> tuple[bytes, str]:
    """``(body, content type)`` of a scrape: every process's metrics in multiprocess mode,
    else those of ``registry``."""
    if multiprocess_dir() is not None:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    if registry is None:
        registry = CollectorRegistry()
    return generate_latest(registry), CONTENT_TYPE_LATEST


def is_proxied(headers: Mapping[str, str]) -> bool:
    """True when a request came through nginx (which always sets X-Forwarded-For): metrics are
    for a scraper on the app's own port, never for the public."""
    return "X-Forwarded-For" in headers


def clean_multiprocess_dir() -> None:
    """gunicorn ``on_starting`` hook body: create the directory and remove old files, so a
    restarted pool does not add up the previous run's values."""
    path = multiprocess_dir()
    if path is None:
        return
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        stale.unlink(missing_ok=True)


def forget_process(pid: int) -> None:
    """gunicorn ``child_exit`` hook body: drop the live gauges of a worker that exited."""
    if multiprocess_dir() is not None:
        multiprocess.mark_process_dead(pid)


def exit_without_collecting() -> None:
    """The end of a pool process's last hook (``worker_exit`` in the worker, ``on_exit`` in the
    master): skip the final garbage collections (see Exit above). Only there: a process that
    goes on would never collect the frozen objects' cycles."""
    gc.freeze()
