"""StreamWorker (stream/worker.py) in-process, under gevent's loop without monkey-patching
(tests/unit/inprocess.py): its idle loop ends when SIGTERM's handler runs, not at its next tick.

The ``idle_worker`` fixture (tests/unit/conftest.py) makes it without gunicorn's constructor, its
tick an hour long: a loop that waited it out would miss every deadline here.
"""

from __future__ import annotations

import signal

import gevent

from tests.unit.inprocess import green_wait


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
