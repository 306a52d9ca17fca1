"""WebWorker: gunicorn's gthread worker, serving a kept-alive connection's next request on the
thread that answered the last one when it comes at once.

The web pool runs ``--worker-class eventgate.web.worker.WebWorker`` (blocking threads, as gthread).
In gunicorn's gthread, every request on a kept-alive connection — what nginx's upstream pool
sends — crosses threads twice: the main thread's poller sees it readable and hands it to a pool
thread (a wake-up), and the answered connection goes back to the main thread through a pipe
(another) to be polled again. For a single-event publish that hand-off was the largest cost left
besides the publish itself (docs/performance.md has the figures).

Here the pool thread that answered a kept-alive request waits up to ``LINGER_SECONDS`` on that
connection for the next one, and serves it itself if it comes: a client that publishes in a loop
(nginx's busy upstream connections) costs one wake-up per request instead of three. It lingers
only while the worker is alive and no other connection's request is waiting for a thread, so a
request on another connection waits at most ``LINGER_SECONDS`` behind it, and only when every
thread is lingering. Everything else — accepting, parsing, keep-alive limits and timeouts,
graceful stop, HTTP/2 — is gunicorn's, unchanged.
"""

from __future__ import annotations

import select

from gunicorn.workers.gthread import ThreadWorker

# Long enough for a client's turn-around between an answer and its next request on loopback
# (nginx's and the bench client's, docs/performance.md), short enough to be no one's
# latency: at most this, when every thread lingers while another connection's request waits.
LINGER_SECONDS = 0.002


class WebWorker(ThreadWorker):
    """gthread, with a kept-alive connection's next request served on the same thread when it
    comes within ``LINGER_SECONDS`` (see the module docstring)."""

    def handle(self, conn) -> object:  # noqa: ANN001 - gunicorn's TConn
        keepalive = super().handle(conn)
        while keepalive is True and self._next_request_comes(conn):
            keepalive = super().handle(conn)
        return keepalive

    def _next_request_comes(self, conn) -> bool:  # noqa: ANN001 - gunicorn's TConn
        """Whether ``conn`` has its next request (or its close) readable within the linger,
        and this thread may wait for it."""
        if not self.alive or self._requests_waiting():
            return False
        # A body drain may have read ahead into the next request (gunicorn checks the same in
        # finish_request): those bytes no longer make the socket readable.
        if conn.parser.unreader.buf.getvalue():
            return True
        poller = select.poll()
        poller.register(conn.sock, select.POLLIN)
        return bool(poller.poll(LINGER_SECONDS * 1000))

    def _requests_waiting(self) -> bool:
        """Whether a connection already handed to the pool waits for a thread. The pool is the
        standard ``ThreadPoolExecutor`` gunicorn makes; should that change, never linger."""
        queue = getattr(self.tpool, "_work_queue", None)
        return queue is None or not queue.empty()
