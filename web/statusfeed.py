"""StatusFeed: the web app's periodic ops status event, which the status page receives by SSE.

Every ``status_interval_seconds`` one web worker (whichever takes a short Redis lock first, so
several workers and several machines publish one event per interval between them) publishes
the gateway overview (web/overview.py) as an event of type ``status`` on ``STATUS_CHANNEL``.
The page thus watches the gateway through the gateway itself: if its counters move, publish,
fan-out and the stream path all work.

The channel is an ordinary channel name reserved by convention for ops; only the status page
mints tokens for it, and its events carry counts, never tokens, keys or subjects. Started by
the web pool's gunicorn hook (web/gunicorn_conf.py), one daemon thread per worker; apps built
in tests or shells start nothing.
"""

from __future__ import annotations

import logging
import threading

import redis

from eventgate.shared import keys
from eventgate.shared.errors import EventgateError
from eventgate.web.extension import EventGate
from eventgate.web.isotime import iso_utc
from eventgate.web.overview import overview

STATUS_CHANNEL = "eventgate.status"
STATUS_EVENT_TYPE = "status"
#: Status events kept in the channel's log (about ten minutes at the default interval): each
#: holds every worker's record, so the global retention (10,000 events) could cost Redis
#: megabytes for history nobody replays.
STATUS_EVENTS_KEPT = 300

log = logging.getLogger("eventgate.web.statusfeed")


class StatusFeed:
    """Publishes the status event every interval from a daemon thread; ``stop()`` ends it."""

    def __init__(self, gate: EventGate) -> None:
        self.gate = gate
        self.interval_seconds = gate.config.status_interval_seconds
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="eventgate-status", daemon=True)

    def start(self) -> StatusFeed:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()

    def publish_once(self) -> str | None:
        """Publish one status event unless another worker did this interval; returns its id."""
        client = self.gate.client
        hold_ms = max(1, int(self.interval_seconds * 1000) - 50)
        if not client.set(keys.STATUS_FEED_LOCK, "1", nx=True, px=hold_ms):
            return None
        data = overview(client)
        data["at"] = iso_utc()
        event_id = self.gate.publish_now(STATUS_CHANNEL, data, STATUS_EVENT_TYPE)
        client.xtrim(keys.log_key(STATUS_CHANNEL), maxlen=STATUS_EVENTS_KEPT, approximate=True)
        return event_id

    def _run(self) -> None:
        while not self._stopped.wait(self.interval_seconds):
            try:
                self.publish_once()
            except (redis.RedisError, OSError, EventgateError) as error:
                log.debug("status event not published: %s", type(error).__name__)
