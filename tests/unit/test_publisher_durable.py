"""Durable publish (``durable_replicas``) against a real primary with a real replica: a confirmed
publish is on the replica when it returns, too few replicas fail fast with NotDurable, a retry
under the same idempotency key stores nothing twice, and without it no WAIT is ever sent."""

from __future__ import annotations

import time

import pytest

from eventgate.shared import keys
from eventgate.shared.errors import NotDurable, PublishError


def waits(client) -> int:
    """WAIT commands the Redis of ``client`` has run."""
    return client.info("commandstats").get("cmdstat_wait", {}).get("calls", 0)


def logged(client, channel: str) -> list[str]:
    return [entry_id.decode() for entry_id, _ in client.xrange(keys.log_key(channel))]


def test_a_confirmed_durable_publish_is_on_the_replica_when_it_returns(
    replicated, make_publisher, channel
):
    primary, replica = replicated
    publisher = make_publisher(redis_url=primary.url, durable_replicas=1)
    publisher.publish(channel + ".warm-up")  # loads the script: one WAIT per publish below
    with primary.client() as watch, replica.client() as mirror:
        before = waits(watch)
        ids = [publisher.publish(channel, n) for n in range(5)]
        ids += publisher.publish_many([publisher.draft(channel, n) for n in range(3)])
        # No wait for replication here: the publishes returned, so the replica holds them.
        assert logged(mirror, channel) == ids
        assert waits(watch) - before == 6  # one WAIT per publish


def test_more_replicas_than_there_are_fail_fast_and_a_retry_under_the_key_stores_nothing(
    replicated, make_publisher, channel
):
    primary, _ = replicated
    publisher = make_publisher(redis_url=primary.url, durable_replicas=2)
    started = time.monotonic()
    with pytest.raises(NotDurable) as caught:
        publisher.publish(channel, 1, idempotency_key=channel)
    assert time.monotonic() - started < 2  # WAIT gives up after half the command timeout
    assert isinstance(caught.value, PublishError)
    assert (caught.value.code, caught.value.status) == ("not_durable", 503)
    assert "1 of the 2 replicas" in caught.value.message

    # A replay waits for the replicas too: still too few.
    with pytest.raises(NotDurable):
        publisher.publish(channel, 1, idempotency_key=channel)
    # With a requirement the replicas meet, the retry is confirmed with the first id.
    with primary.client() as watch:
        [first] = logged(watch, channel)
        retried = make_publisher(redis_url=primary.url, durable_replicas=1)
        assert retried.publish(channel, 1, idempotency_key=channel) == first
        assert logged(watch, channel) == [first]


def test_a_durable_publish_loads_the_script_a_primary_lacks(replicated, make_publisher, channel):
    primary, replica = replicated
    publisher = make_publisher(redis_url=primary.url, durable_replicas=1)
    first = publisher.publish(channel, 1)
    with primary.client() as watch, replica.client() as mirror:
        watch.script_flush()  # as on a restarted or newly promoted primary
        second = publisher.publish(channel, 2)
        assert logged(mirror, channel) == [first, second]


def test_without_durable_replicas_no_wait_is_sent(make_publisher, inspector, channel):
    publisher = make_publisher()
    before = waits(inspector)
    publisher.publish(channel, 1)
    publisher.publish(channel, 2, idempotency_key=channel)
    publisher.publish_many([publisher.draft(channel, 3), publisher.draft(channel, 4)])
    assert len(logged(inspector, channel)) == 4
    assert waits(inspector) == before
