"""StreamWorker (stream/worker.py) in-process, under gevent's loop without monkey-patching
(tests/unit/inprocess.py): its idle loop ends when SIGTERM's handler runs, not at its next tick.

The worker is made without gunicorn's constructor (no master, no config): its loop needs only
``alive``, ``sockets`` (empty: the accept fast path took them) and ``notify``. The tick is made an
hour long, so a loop that waited it out would miss every deadline here.
"""

from __future__ import annotations

import signal

import gevent
import pytest

from eventgate.stream import worker as worker_module
from eventgate.stream.worker import StreamWorker
from tests.unit.inprocess import green_wait


@pytest.fixture
def idle_worker(monkeypatch) -> StreamWorker:
    """A StreamWorker as after post_worker_init with the fast path: alive, no servers of its own,
    a heartbeat that counts."""
    monkeypatch.setattr(worker_module, "TICK_SECONDS", 3600.0)
    worker = StreamWorker.__new__(StreamWorker)
    worker.alive = True
    worker.sockets = []
    worker.notified = 0

    def notify() -> None:
        worker.notified += 1

    worker.notify = notify
    return worker


def test_sigterm_ends_the_idle_loop_without_waiting_for_its_tick(idle_worker):
    loop = gevent.spawn(idle_worker.run)
    green_wait(lambda: idle_worker.notified == 1, 5, "the loop's first heartbeat")

    idle_worker.handle_exit(signal.SIGTERM, None)

    loop.join(timeout=5)
    assert loop.ready(), "the loop still waits for its tick"
    assert loop.successful()
    assert not idle_worker.alive
    assert idle_worker.notified == 1  # no further tick ran


def test_a_sigterm_before_the_loop_starts_runs_no_loop(idle_worker):
    idle_worker.handle_exit(signal.SIGTERM, None)

    loop = gevent.spawn(idle_worker.run)

    green_wait(loop.ready, 5, "the loop to return")
    assert idle_worker.notified == 0
