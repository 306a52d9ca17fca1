"""The worker's clock: heartbeats for quiet streams and the end of streams whose token expired.

One greenlet per process walks every connection twice per heartbeat period; a connection that
was sent nothing for a whole period gets a comment. Writing is also how a vanished client is
noticed when its hang-up did not reach us (the send fails).
"""

from __future__ import annotations

import time

import gevent

from eventgate.shared import sse
from eventgate.stream.hub import Hub
from eventgate.stream.subscriber import Subscriber

_COMMENT = sse.comment("hb")


def token_expired_words(subscriber: Subscriber) -> bytes:
    """What a stream whose token expired is told before it is closed: the client fetches a new
    token and reconnects with its last event id."""
    return sse.token_expired(subscriber.cursor(subscriber.channels[0]), subscriber.expires_at)


def run(hub: Hub, heartbeat_seconds: float) -> None:
    """Run forever (spawn it): beat every half period, end expired streams."""
    period = heartbeat_seconds / 2
    while True:
        gevent.sleep(period)
        hub.beat(_COMMENT)
        hub.expire(time.time(), token_expired_words)
