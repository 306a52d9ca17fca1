"""stream/readiness.py: redis-py's readiness check at every command, under gevent's ``poll``
(as in a monkey-patched stream worker), asks the OS when it must not wait — no switch to the
hub — and still waits cooperatively when it may. The ``patched_worker`` fixture
(tests/unit/conftest.py) sets gevent's ``poll`` up as a stream worker has it."""

from __future__ import annotations

import select

import gevent
from redis._parsers import hiredis

from eventgate.stream import readiness


def test_a_check_that_must_not_wait_does_not_switch_to_the_hub(patched_worker):
    mine, peer = patched_worker
    ran = []
    gevent.spawn(ran.append, "another greenlet")
    assert hiredis._socket_can_read(mine, 0) is False
    peer.sendall(b"+stray reply\r\n")
    assert hiredis._socket_can_read(mine, 0) is True
    assert hiredis._socket_is_closed(mine) is False
    assert ran == []  # nothing ran: the checks never left this greenlet
    peer.close()
    mine.recv(100)
    assert hiredis._socket_is_closed(mine) is True
    assert ran == []


def test_a_check_that_may_wait_waits_cooperatively(patched_worker):
    mine, peer = patched_worker
    gevent.spawn_later(0.05, peer.sendall, b"+late\r\n")
    assert hiredis._socket_can_read(mine, 5) is True  # the writer ran while it waited


def test_install_is_idempotent(patched_worker):
    assert readiness.install()
    assert isinstance(hiredis.select, readiness._Select)
    assert hiredis.select.POLLIN == select.POLLIN
