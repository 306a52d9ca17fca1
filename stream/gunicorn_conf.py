"""gunicorn settings and hooks for the stream pool (``-c python:stream.gunicorn_conf``).

Streams never finish on their own, so gunicorn's "graceful" stop would just cut them at
graceful_timeout — all at once, and on SIGTERM without running any cleanup. Instead, when a worker
exits (SIGTERM, HUP reload, max age) it ends every stream itself with a jittered ``retry:``, so
clients come back spread out, on the new workers, and resume from their cursor.
"""

from __future__ import annotations

import random

from shared import sse

worker_class = "gevent"
keepalive = 0
max_requests = 0
preload_app = False


def worker_exit(server, worker) -> None:  # noqa: ANN001 - gunicorn's hook signature
    app = getattr(worker, "wsgi", None)
    state = getattr(app, "extensions", {}).get("eventgate.stream")
    if state is None:
        return
    retry_ms = state.config.retry_ms
    state.broker.stop()
    state.hub.finish_all(
        lambda: sse.retry(int(retry_ms * random.uniform(0.2, 2.0))) + sse.comment("shutdown")
    )
