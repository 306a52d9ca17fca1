"""StreamWorker: gunicorn's gevent worker, which leaves its idle loop the moment it is told to
exit instead of at its next once-a-second tick.

The stream pool runs ``--worker-class eventgate.stream.worker.StreamWorker``. With the accept
fast path (stream/acceptor.py) the worker builds no servers of its own: its main greenlet only
ticks gunicorn's heartbeat (``notify``) once a second until SIGTERM clears ``alive``. gunicorn's
gevent worker waits out that second in ``gevent.sleep(1.0)``, so every stop — a deploy, a HUP
reload, ``make restart``, each test's pool — waited up to a second before the worker even began
to end its streams. Here the same tick waits on an event that SIGTERM sets: the worker goes on
to its ``worker_exit`` hook at once (stream/state.py ``shutdown``: streams end with their
``retry:``, ordinary requests still get ``graceful_timeout``). Without the fast path (TLS: the
worker's own servers) everything is gunicorn's, unchanged.
"""

from __future__ import annotations

from gevent.event import Event
from gunicorn.workers.ggevent import GeventWorker

#: gunicorn's heartbeat period in its gevent worker (the master kills a worker silent for
#: ``--timeout``).
TICK_SECONDS = 1.0


class StreamWorker(GeventWorker):
    """gevent's worker whose idle loop ends as soon as SIGTERM arrives (see the module)."""

    #: Set by SIGTERM; made in ``run``, after the fork, on this worker's own gevent hub.
    _exiting: Event | None = None

    def run(self) -> None:
        if self.sockets:  # gunicorn's own servers serve (no accept fast path): its loop, its drain
            super().run()
            return
        self._exiting = Event()
        while self.alive:
            self.notify()
            self._exiting.wait(TICK_SECONDS)

    def handle_exit(self, sig, frame) -> None:  # noqa: ANN001 - gunicorn's signal handler
        super().handle_exit(sig, frame)
        # Runs as a signal handler between two bytecodes of any greenlet: ``set`` only flags and
        # schedules the waiter's wake-up on the hub, it never blocks or switches.
        if self._exiting is not None:
            self._exiting.set()
