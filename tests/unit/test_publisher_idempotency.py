"""Idempotent publish against a real redis-server: a repeat under the same key answers the first
ids and stores and publishes nothing, other events under a used key are refused, the record
expires, and two publishers racing on one key store once."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from eventgate.shared import keys
from eventgate.shared.errors import IdempotencyKeyReused, InvalidRequest
from eventgate.shared.events import Event
from tests.servers import wait_for


def stored(inspector, channel: str) -> int:
    return inspector.xlen(keys.log_key(channel))


def script_runs(inspector) -> int:
    stats = inspector.info("commandstats")
    return sum(stats.get(f"cmdstat_{name}", {}).get("calls", 0) for name in ("evalsha", "eval"))


def test_a_repeat_answers_the_first_id_and_stores_and_publishes_nothing(
    make_publisher, inspector, subscribe, channel
):
    publisher = make_publisher()
    subscription = subscribe(channel)
    key = f"{channel}.paid"
    first = publisher.publish(channel, {"n": 1}, "t", idempotency_key=key)
    again = publisher.publish(channel, {"n": 1}, "t", idempotency_key=key)
    marker = publisher.publish(channel, "marker")

    assert again == first
    assert stored(inspector, channel) == 2
    # The live feed carries the first publish and the marker: the repeat published nothing.
    received = [Event.from_payload(ch, p).id for ch, p in subscription.messages(2)]
    assert received == [first, marker]


def test_a_repeated_batch_answers_every_id_in_order(make_publisher, inspector, channel):
    publisher = make_publisher()
    other = channel + ".b"
    drafts = [publisher.draft(channel, 1), publisher.draft(other, 2, "x"),
              publisher.draft(channel, 3)]
    first = publisher.publish_many(drafts, idempotency_key=channel)
    again = publisher.publish_many(list(drafts), idempotency_key=channel)

    assert again == first and len(first) == 3
    assert (stored(inspector, channel), stored(inspector, other)) == (2, 1)


@pytest.mark.parametrize(
    "repeat",
    [
        lambda channel: (channel, {"n": 2}, "t"),
        lambda channel: (channel, {"n": 1}, "other"),
        lambda channel: (channel + ".elsewhere", {"n": 1}, "t"),
        lambda channel: (channel, {"n": 1.0}, "t"),  # the same value, other JSON text
    ],
    ids=["data", "type", "channel", "data-spelled-otherwise"],
)
def test_other_events_under_a_used_key_are_refused_and_store_nothing(
    make_publisher, inspector, channel, repeat
):
    publisher = make_publisher()
    publisher.publish(channel, {"n": 1}, "t", idempotency_key=channel)
    repeat_channel, data, event_type = repeat(channel)

    with pytest.raises(IdempotencyKeyReused) as caught:
        publisher.publish(repeat_channel, data, event_type, idempotency_key=channel)

    assert caught.value.code == "idempotency_key_reused" and caught.value.status == 409
    assert channel in caught.value.message
    assert stored(inspector, channel) == 1
    assert stored(inspector, repeat_channel) == (1 if repeat_channel == channel else 0)


def test_a_batch_is_not_a_repeat_of_its_first_event(make_publisher, inspector, channel):
    publisher = make_publisher()
    publisher.publish(channel, 1, idempotency_key=channel)
    with pytest.raises(IdempotencyKeyReused):
        publisher.publish_many([publisher.draft(channel, 1), publisher.draft(channel, 2)],
                               idempotency_key=channel)
    assert stored(inspector, channel) == 1


def test_the_record_lives_for_the_idempotency_seconds(make_publisher, inspector, channel):
    make_publisher().publish(channel, idempotency_key=channel)
    assert 86390 <= inspector.ttl(keys.idempotency_key(channel)) <= 86400


def test_after_the_record_expires_the_key_publishes_again(make_publisher, inspector, channel):
    publisher = make_publisher(idempotency_seconds=1)
    first = publisher.publish(channel, idempotency_key=channel)
    record = keys.idempotency_key(channel)
    wait_for(lambda: not inspector.exists(record), 5, "the idempotency record to expire")

    second = publisher.publish(channel, idempotency_key=channel)

    assert second != first
    assert stored(inspector, channel) == 2


def race(publishers: list, channel: str, key: str) -> list[list[str]]:
    """Every publisher publishes the same batch under ``key`` at once (released together)."""
    start = threading.Barrier(len(publishers))

    def publish(publisher) -> list[str]:
        drafts = [publisher.draft(channel, {"key": key}), publisher.draft(channel, 2)]
        start.wait(5)
        return publisher.publish_many(drafts, idempotency_key=key)

    with ThreadPoolExecutor(len(publishers)) as pool:
        return list(pool.map(publish, publishers))


def test_publishers_racing_on_one_key_store_once_and_all_get_its_ids(
    make_publisher, inspector, channel
):
    publishers = [make_publisher() for _ in range(3)]
    for publisher in publishers:
        publisher.publish(channel + ".warm-up")  # connected, script loaded: the race is the run
    for round_ in range(20):
        first, *others = race(publishers, channel, f"{channel}.{round_}")
        assert len(first) == 2
        assert others == [first] * len(others)
    assert stored(inspector, channel) == 2 * 20


@pytest.mark.parametrize("key", ["", "k" * 129, "two words", "a/b", "caf\u00e9", "k\n", 42])
def test_a_malformed_key_is_refused_before_redis(make_publisher, inspector, channel, key):
    publisher = make_publisher()
    publisher.publish(channel + ".warm-up")
    before = script_runs(inspector)
    with pytest.raises(InvalidRequest) as caught:
        publisher.publish(channel, idempotency_key=key)
    assert caught.value.code == "invalid_request"
    assert "idempotency key" in caught.value.message
    assert script_runs(inspector) == before
    assert stored(inspector, channel) == 0


def test_the_longest_key_and_every_allowed_character_are_accepted(make_publisher, channel):
    publisher = make_publisher()
    for key in [channel + "k" * (128 - len(channel)), channel + ".AZaz09_:-"]:
        first = publisher.publish(channel, key, idempotency_key=key)
        assert publisher.publish(channel, key, idempotency_key=key) == first


def test_nothing_to_publish_leaves_no_record(make_publisher, inspector, channel):
    assert make_publisher().publish_many([], idempotency_key=channel) == []
    assert not inspector.exists(keys.idempotency_key(channel))
