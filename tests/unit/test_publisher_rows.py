"""Publishing outbox rows (``Publisher.store_rows``, what the relay and the page cursor use)
against a real redis-server: every row exactly once under its own key, in order with the log's
prev chain, live like any publish; a batch that repeats stored rows adds only the new ones; a
key holding other events refuses the whole batch with nothing stored."""

from __future__ import annotations

import uuid

import pytest

from eventgate.shared import keys
from eventgate.shared.errors import IdempotencyKeyReused, NotDurable
from eventgate.shared.events import Event


def _rows(publisher, channel: str, numbers):  # noqa: ANN001, ANN202
    return [(publisher.draft(channel, {"n": n}, "t"), f"outbox.{uuid.uuid4().hex}")
            for n in numbers]


def _log(inspector, channel: str) -> list[tuple[str, dict]]:
    return [(i.decode(), {k.decode(): v.decode() for k, v in f.items()})
            for i, f in inspector.xrange(keys.log_key(channel))]


def test_rows_are_stored_in_order_with_the_prev_chain_and_go_live(
    make_publisher, inspector, subscribe, channel
):
    publisher = make_publisher()
    subscription = subscribe(channel)
    rows = _rows(publisher, channel, range(3))

    ids = publisher.store_rows(rows)

    log = _log(inspector, channel)
    assert [entry_id for entry_id, _ in log] == ids
    assert [fields["data"] for _, fields in log] == ['{"n":0}', '{"n":1}', '{"n":2}']
    assert [fields["prev"] for _, fields in log] == ["0-0", ids[0], ids[1]]
    assert [Event.from_payload(c, p).id for c, p in subscription.messages(3)] == ids


def test_a_batch_repeating_stored_rows_answers_their_ids_and_adds_only_the_new_ones(
    make_publisher, inspector, channel
):
    publisher = make_publisher()
    rows = _rows(publisher, channel, range(4))
    first = publisher.store_rows(rows[:2])

    again = publisher.store_rows(rows)

    assert again[:2] == first
    log = _log(inspector, channel)
    assert [entry_id for entry_id, _ in log] == again
    assert log[2][1]["prev"] == first[1]  # the new rows chain on to the stored ones


def test_a_key_holding_other_events_refuses_the_batch_and_stores_nothing(
    make_publisher, inspector, channel
):
    publisher = make_publisher()
    [(draft, key)] = _rows(publisher, channel, [1])
    publisher.publish(channel, "something else", idempotency_key=key)
    before = inspector.xlen(keys.log_key(channel))

    with pytest.raises(IdempotencyKeyReused):
        publisher.store_rows([*_rows(publisher, channel, [0]), (draft, key)])

    assert inspector.xlen(keys.log_key(channel)) == before


def test_a_row_stored_by_store_rows_is_a_replay_for_a_plain_keyed_publish(
    make_publisher, inspector, channel
):
    publisher = make_publisher()
    [(draft, key)] = _rows(publisher, channel, [7])
    [event_id] = publisher.store_rows([(draft, key)])

    stored = publisher.store([draft], idempotency_key=key)

    assert stored.ids == [event_id] and stored.replayed
    assert inspector.xlen(keys.log_key(channel)) == 1


def test_durable_rows_without_replicas_are_stored_but_not_confirmed(
    make_publisher, inspector, channel
):
    publisher = make_publisher(durable_replicas=1, redis_timeout_seconds=0.2)

    with pytest.raises(NotDurable):
        publisher.store_rows(_rows(publisher, channel, [1]))

    assert inspector.xlen(keys.log_key(channel)) == 1
