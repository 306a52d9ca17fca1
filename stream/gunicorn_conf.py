"""gunicorn settings and hooks for the stream pool (``-c stream/gunicorn_conf.py``; loaded by path,
by the master, so that it imports neither gevent nor the app before the fork).

Streams never finish on their own, so gunicorn's "graceful" stop would just cut them at
graceful_timeout — all at once, and on SIGTERM without running any cleanup. Instead, when a worker
exits (SIGTERM, HUP reload, max age) it ends every stream itself with a jittered ``retry:``, so
clients come back spread out, on the new workers, and resume from their cursor.
"""

from __future__ import annotations

import random

from eventgate.shared import pools, sse

worker_class = "gevent"
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


def worker_exit(server, worker) -> None:  # noqa: ANN001 - gunicorn's hook signature
    app = getattr(worker, "wsgi", None)
    state = getattr(app, "extensions", {}).get("eventgate.stream")
    if state is None:
        return
    retry_ms = state.config.retry_ms
    # Imported here, in the worker (which has loaded it already): the master loads this file and
    # must not import the stream package (gevent, redis) before the fork.
    from eventgate.stream import status

    if state.acceptor is not None:
        state.acceptor.close(graceful_timeout=server.cfg.graceful_timeout)
    status.withdraw(state)
    state.broker.stop()
    state.hub.finish_all(
        lambda: sse.retry(int(retry_ms * random.uniform(0.2, 2.0))) + sse.comment("shutdown")
    )
    # Give the subject leases of the streams just ended back now: their clients reconnect within
    # seconds and must not find their own old streams still counted against them.
    if state.limits is not None:
        try:
            state.limits.flush()
        except Exception as error:  # noqa: BLE001 - Redis down: the leases lapse on their own
            server.log.warning("stream leases not released at exit: %s", error)


def post_worker_init(worker) -> None:  # noqa: ANN001 - gunicorn's hook signature
    """In the worker, with the app loaded and before it builds its servers: the accept fast path
    (stream/acceptor.py) takes the listeners; it opens plain stream requests itself and hands
    everything else to gunicorn's handler."""
    from eventgate.stream import acceptor  # in the worker only, see worker_exit

    acceptor.install(worker)


def on_starting(server) -> None:  # noqa: ANN001 - gunicorn's hook signature
    """In the master, before any worker: start metrics afresh (see shared/pools.py)."""
    pools.clean_multiprocess_dir()


def child_exit(server, worker) -> None:  # noqa: ANN001 - gunicorn's hook signature
    """In the master, for every worker that ended (a kill -9 too): drop its live gauges."""
    pools.forget_process(worker.pid)
