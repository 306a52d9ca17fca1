"""The worker's clock: heartbeats for quiet streams and the end of streams whose token expired.

One greenlet per process walks every connection twice per heartbeat period; a connection that
was sent nothing for a whole period gets a comment. Writing is also how a vanished client is
noticed when its hang-up did not reach us (the send fails).
"""

from __future__ import annotations

import json
import time

import gevent

from eventgate.shared import sse
from eventgate.stream.hub import Hub
from eventgate.stream.subscriber import Subscriber

TOKEN_EXPIRED_EVENT = "eventgate.token_expired"
_COMMENT = sse.comment("hb")


def token_expired_words(subscriber: Subscriber) -> bytes:
    """The documented control event sent before a stream whose token expired is closed: the
    client fetches a new token and reconnects with its last event id (the ``id:`` repeats the
    current cursor so nothing is skipped or repeated)."""
    data = json.dumps({"expired_at": subscriber.expires_at}, separators=(",", ":"))
    channel = subscriber.channels[0]
    return sse.frame(subscriber.cursor(channel), TOKEN_EXPIRED_EVENT, data)


def run(hub: Hub, heartbeat_seconds: float) -> None:
    """Run forever (spawn it): beat every half period, end expired streams."""
    period = heartbeat_seconds / 2
    while True:
        gevent.sleep(period)
        hub.beat(_COMMENT)
        hub.expire(time.time(), token_expired_words)
