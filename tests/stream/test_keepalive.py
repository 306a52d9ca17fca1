"""The broker's keepalive: a pub/sub connection on which Redis stopped answering (frozen, not
closed: nothing ever reaches the reader) is found by PING, cut, and reconnected with backfill."""

from __future__ import annotations

import signal

from tests.sequences import assert_sequences, connect_clients
from tests.servers import wait_for
from tests.stream.paced import PacedPublisher


def test_frozen_redis_is_found_by_ping_and_the_feed_resumes(
    make_pool, tokens, publisher, channel, redis_server
):
    pool = make_pool()  # heartbeat 1 s: PING every second, dead after 3 s without PONG
    clients = connect_clients(pool.port, tokens, [channel])
    redis_server.signal(signal.SIGSTOP)
    try:
        wait_for(lambda: "stopped answering PING" in pool.log_text(), 15,
                 "the keepalive to notice the silent connection", pool.log)
    finally:
        redis_server.signal(signal.SIGCONT)
    paced = PacedPublisher(publisher, [channel], total=100, rate=200).start()
    assert_sequences(clients, paced, [channel])
    wait_for(lambda: "pub/sub reconnected" in pool.log_text(), 15, "the pub/sub reconnect",
             pool.log)
