"""A stream pool on a Sentinel URL follows the primary (real redis-server and sentinel processes,
a real gevent pool): an open stream keeps receiving what is published after a graceful failover
(the old primary, demoted, still serves pub/sub: the worker must leave it on its own) and after
kill -9 of the primary, on the same connection, with every event the surviving log holds
delivered once and in order; the worker counts each failover once."""

from __future__ import annotations

import json

from eventgate.shared import keys
from eventgate.shared.errors import PublishError
from eventgate.shared.primary import CHECK_SECONDS
from eventgate.shared.publisher import Publisher
from tests.clients import StreamClient, stream_path
from tests.ha.sentinels import every_sentinel_names, failovers_seen, stream_clients_on
from tests.servers import wait_for
from tests.stack import http_get


def _store(publisher: Publisher, channel: str, n: int) -> str:
    """Publish event ``n`` until it is stored (a failover makes publishes fail for a while)."""

    def attempt() -> str | None:
        try:
            return publisher.publish(channel, {"n": n}, idempotency_key=f"{channel}-{n}")
        except PublishError:
            return None

    return wait_for(attempt, 30, f"event {n} stored")


def _delivered(client: StreamClient) -> list[int]:
    """The numbers of the events the stream delivered, in order."""
    return [json.loads(event.data)["n"] for event in list(client.events)
            if event.type == "message"]


def _surviving_log(sentinel_set, channel: str) -> list[int]:  # noqa: ANN001 - SentinelSet
    """The numbers of the events the current primary's log holds, in order."""
    entries = sentinel_set.primary().client().xrange(keys.log_key(channel))
    return [json.loads(fields[b"data"])["n"] for _, fields in entries]


def _holds_in_order(delivered: list[int], log: list[int]) -> bool:
    """Every event of ``log`` is in ``delivered``, in the log's order."""
    remaining = iter(delivered)
    return all(n in remaining for n in log)


def test_an_open_stream_follows_a_graceful_failover_and_a_kill_9(
    sentinel_set, make_pool, tokens, channel
):
    pool = make_pool(redis_url=sentinel_set.url)
    publisher = Publisher.from_url(sentinel_set.url)
    token, _ = tokens.issue([channel])
    client = StreamClient(pool.port, stream_path(token, (channel,))).start().wait_open()
    sent = 0

    def publish_and_wait(count: int, what: str) -> None:
        nonlocal sent
        for _ in range(count):
            sent += 1
            _store(publisher, channel, sent)
        wait_for(lambda: _holds_in_order(_delivered(client), _surviving_log(sentinel_set,
                                                                             channel)),
                 20, f"{what}: every event of the log delivered, in order", pool.log)

    try:
        publish_and_wait(3, "before any failover")

        old = sentinel_set.primary()
        assert stream_clients_on(old)
        sentinel_set.sentinel().execute_command("SENTINEL", "FAILOVER", sentinel_set.service)
        new = sentinel_set.wait_failover(old)
        wait_for(lambda: every_sentinel_names(sentinel_set, new), 10, "every sentinel naming it")
        # Within a check period or two, not when Sentinel demotes the old primary (up to ~10 s
        # later; it then kills its pub/sub clients): until then a subscriber left there would
        # hear nothing that is published on the new primary.
        wait_for(lambda: stream_clients_on(new) and not stream_clients_on(old),
                 2 * CHECK_SECONDS + 2, "the worker's pub/sub moving to the new primary", pool.log)
        wait_for(lambda: failovers_seen(pool.port) >= 1, 10,
                 "the worker counting the graceful failover", pool.log)
        publish_and_wait(3, "after SENTINEL FAILOVER")

        sentinel_set.primary().signal(9)
        publish_and_wait(3, "after kill -9 of the primary")
        wait_for(lambda: failovers_seen(pool.port) >= 2, 20,
                 "the worker seeing the second failover", pool.log)
        publish_and_wait(2, "once settled")

        delivered = _delivered(client)
        assert len(delivered) == len(set(delivered)), "an event was delivered twice"
        assert not client.ended.is_set(), "the stream ended: it must outlive a failover"
        assert delivered[-1] == sent
        assert failovers_seen(pool.port) == 2  # once per failover, all pools together
        assert http_get(f"http://127.0.0.1:{pool.port}/streams/readyz")[0] == 200
    finally:
        client.close()
        publisher.client.close()
        sentinel_set.restore()
