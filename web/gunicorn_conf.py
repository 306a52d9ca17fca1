"""gunicorn hooks for the web pool (``-c python:eventgate.web.gunicorn_conf``; run by the master).

The master keeps the metrics directory honest (shared/pools.py): cleaned when the pool
starts, a worker's live gauges dropped when it exits, however it ended. Each worker, once
booted, starts the ops status feed its app holds (web/ops.py). Nothing here imports the web app:
the master must stay light, and ``kill -HUP`` must load fresh code into new workers.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from gunicorn import util

from eventgate.shared import pools

# As long as nginx lets through (its 8k header buffers), so that gunicorn never answers with its
# own HTML error page; nginx answers anything longer with JSON.
limit_request_line = 8190
# gunicorn's own refusals (e.g. a control character in a header value) answer JSON, not HTML.
pools.install_json_errors()

logger_class = pools.logger_class_from_env()


def _date_of_this_second() -> Callable[[float | None], str]:
    """gunicorn's ``util.http_date`` formats the Date header anew for every response (a share
    of a publish request's CPU that docs/performance.md measures); the header has a resolution
    of one second, so format it once per second, as nginx does. Other timestamps are formatted
    as before."""
    # A reload (HUP) runs this file again in the master: wrap gunicorn's own function only.
    format_date = getattr(util.http_date, "__wrapped__", util.http_date)
    # (second, its Date), replaced as one object: threads never see half of an update.
    last: list[tuple[int, str] | None] = [None]

    def http_date(timestamp: float | None = None) -> str:
        if timestamp is not None:
            return format_date(timestamp)
        second = int(time.time())
        cached = last[0]
        if cached is not None and cached[0] == second:
            return cached[1]
        text = format_date(second)
        last[0] = (second, text)
        return text

    http_date.__wrapped__ = format_date  # type: ignore[attr-defined]
    return http_date


util.http_date = _date_of_this_second()


def on_starting(server) -> None:  # noqa: ANN001 - gunicorn's hook signature
    pools.clean_multiprocess_dir()


def child_exit(server, worker) -> None:  # noqa: ANN001 - gunicorn's hook signature
    pools.forget_process(worker.pid)


def post_worker_init(worker) -> None:  # noqa: ANN001 - gunicorn's hook signature
    """In the worker, with the app loaded: start its status feed thread (web/ops.py builds the
    feed, keyed ``pools.STATUS_FEED_KEY``; an app without one starts nothing)."""
    feed = getattr(worker.wsgi, "extensions", {}).get(pools.STATUS_FEED_KEY)
    if feed is not None:
        feed.start()


def worker_exit(server, worker) -> None:  # noqa: ANN001 - gunicorn's hook signature
    """In the worker, as it exits; the master calls it too for a worker already gone, and goes
    on: only the worker skips the final garbage collections (shared/pools.py)."""
    if worker.pid == os.getpid():
        pools.exit_without_collecting()


def on_exit(server) -> None:  # noqa: ANN001 - gunicorn's hook signature
    """In the master, its workers gone, just before it exits."""
    pools.exit_without_collecting()
