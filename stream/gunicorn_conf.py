"""gunicorn settings and hooks for the stream pool (``-c python:eventgate.stream.gunicorn_conf``;
loaded by the master, so that it imports neither gevent nor the app before the fork).

The hooks that run in a worker reach the worker's state (stream/state.py) through its loaded
app and only call it: what a worker does as it starts serving and as it exits is written there.
"""

from __future__ import annotations

from eventgate.shared import pools

# gevent's worker, leaving its idle loop at once on SIGTERM (stream/worker.py); the command
# lines name it too.
worker_class = "eventgate.stream.worker.StreamWorker"
keepalive = 0
max_requests = 0
preload_app = False
# Requests as long as nginx lets through (its 8k header buffers): a stream URL holds a token of
# up to EVENTGATE_MAX_TOKEN_BYTES, channel names and a cursor. gunicorn's default (4094) would
# answer longer ones with its own HTML error; nginx answers anything longer with JSON.
limit_request_line = 8190
# gunicorn's own refusals (e.g. a control character in a header value) answer JSON, not HTML.
pools.install_json_errors()

logger_class = pools.logger_class_from_env()

def _stream_state(worker):  # noqa: ANN001, ANN202 - gunicorn's worker; a StreamState or None
    app = getattr(worker, "wsgi", None)
    return getattr(app, "extensions", {}).get(pools.STREAM_STATE_KEY)


def post_worker_init(worker) -> None:  # noqa: ANN001 - gunicorn's hook signature
    """In the worker, with the app loaded and before it builds its servers: the accept fast path
    (stream/acceptor.py) takes the listeners; it opens plain stream requests itself and hands
    everything else to gunicorn's handler."""
    state = _stream_state(worker)
    if state is not None:
        state.take_listeners(worker)


def worker_exit(server, worker) -> None:  # noqa: ANN001 - gunicorn's hook signature
    """In the worker, as it exits (SIGTERM, HUP reload, max age): it ends its streams itself."""
    state = _stream_state(worker)
    if state is not None:
        state.shutdown(graceful_timeout=server.cfg.graceful_timeout)
        pools.exit_without_collecting()  # this worker's last act


def on_exit(server) -> None:  # noqa: ANN001 - gunicorn's hook signature
    """In the master, its workers gone, just before it exits."""
    pools.exit_without_collecting()


def on_starting(server) -> None:  # noqa: ANN001 - gunicorn's hook signature
    """In the master, before any worker: start metrics afresh (see shared/pools.py)."""
    pools.clean_multiprocess_dir()


def child_exit(server, worker) -> None:  # noqa: ANN001 - gunicorn's hook signature
    """In the master, for every worker that ended (a kill -9 too): drop its live gauges."""
    pools.forget_process(worker.pid)
