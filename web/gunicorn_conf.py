"""gunicorn hooks for the web pool (``-c web/gunicorn_conf.py``; loaded by path, by the master).

The master keeps the metrics directory honest (shared/metrics.py): cleaned when the pool
starts, a worker's live gauges dropped when it exits, however it ended. Each worker, once
booted, starts the ops status feed (web/statusfeed.py). Nothing here imports the web app: the
master must stay light, and ``kill -HUP`` must load fresh code into new workers.
"""

from __future__ import annotations

from shared import gunicornerrors, metrics
from shared.gunicornlog import logger_class_from_env

# As long as nginx lets through (its 8k header buffers), so that gunicorn never answers with its
# own HTML error page; nginx answers anything longer with JSON.
limit_request_line = 8190
# gunicorn's own refusals (e.g. a control character in a header value) answer JSON, not HTML.
gunicornerrors.install()

logger_class = logger_class_from_env() or "gunicorn.glogging.Logger"


def on_starting(server) -> None:  # noqa: ANN001 - gunicorn's hook signature
    metrics.clean_multiprocess_dir()


def child_exit(server, worker) -> None:  # noqa: ANN001 - gunicorn's hook signature
    metrics.forget_process(worker.pid)


def post_worker_init(worker) -> None:  # noqa: ANN001 - gunicorn's hook signature
    """In the worker, with the app loaded: start its status feed thread."""
    app = worker.wsgi
    gate = getattr(app, "extensions", {}).get("eventgate")
    if gate is None:
        return
    # Imported here, in the worker (which has loaded the web package already): see above.
    from web.statusfeed import StatusFeed

    app.extensions["eventgate.statusfeed"] = StatusFeed(gate).start()
