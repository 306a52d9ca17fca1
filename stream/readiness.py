"""redis-py's readiness checks in a gevent worker, without a trip through gevent's hub.

Before every command, redis-py checks that the pooled connection it hands out holds no stray
reply and was not closed by the server: ``poll()`` with a timeout of 0 (and once more to tell a
closed socket from one holding data). Under gevent's monkey-patching that ``poll`` is gevent's,
which registers libev watchers and switches to the hub for a loop iteration even when it must
not wait — about a tenth of a stream worker's CPU per stream open (three or four commands each;
docs/performance.md). A check that must not wait gains nothing from gevent: here it asks the
OS's ``poll`` directly. A check that may wait (redis-py's ``get_message(timeout=…)``, used by
the Sentinel follower) still goes through gevent's, so that it waits cooperatively.

``install`` replaces the ``select`` module that redis-py's hiredis parser (our dependency,
``redis[hiredis]``) looks ``poll`` up in, for the whole process; call it once in a stream worker.
"""

from __future__ import annotations

import logging
import select
from types import ModuleType

from gevent import monkey
from redis._parsers import hiredis

log = logging.getLogger("eventgate.stream")

_OS_POLL = monkey.get_original("select", "poll")


class ReadinessPoll:
    """``select.poll`` for redis-py: ``poll(0)`` is the OS's (a system call, no switch); any
    other timeout is the current ``select.poll`` (gevent's, in a patched worker)."""

    def __init__(self) -> None:
        self._registered: list[tuple[object, int]] = []

    def register(self, fd: object, eventmask: int = select.POLLIN | select.POLLPRI) -> None:
        self._registered.append((fd, eventmask))

    def poll(self, timeout: float | None = None) -> list[tuple[int, int]]:
        poller = _OS_POLL() if timeout == 0 else select.poll()
        for fd, eventmask in self._registered:
            poller.register(fd, eventmask)
        return poller.poll(timeout)


class _Select(ModuleType):
    """The ``select`` module, but for its ``poll``."""

    poll = ReadinessPoll

    def __getattr__(self, name: str) -> object:
        return getattr(select, name)


def install() -> bool:
    """Make redis-py's hiredis parser check readiness through ReadinessPoll; True if it did.
    A redis-py whose parser no longer looks ``select.poll`` up this way is left as it is (a
    warning: the check then costs what it did before, nothing breaks)."""
    current = getattr(hiredis, "select", None)
    if isinstance(current, _Select):
        return True
    if current is not select or not callable(getattr(hiredis, "_socket_can_read", None)):
        log.warning("redis-py's readiness check has changed; it goes through gevent's hub")
        return False
    hiredis.select = _Select("select")
    return True
