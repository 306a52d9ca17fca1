"""Publish exactly once per committed transaction (issue 15), on SQLite and PostgreSQL: what a
Flask-SQLAlchemy app commits reaches the channel's log once, by the worker's relay thread alone;
what it rolls back — explicitly, by raising, in a savepoint — never does.

"Nothing arrived" is judged with a barrier, not a sleep: a committed event published after the
rolled-back one on the same channel; once it arrived, the log must hold it alone.
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from sqlalchemy.orm import Session

from eventgate.shared.outbox import Outbox
from tests.outbox.shop import log_events, outbox_rows
from tests.servers import wait_for

#: The relay thread is woken by the commit: an event arrives at once, well within this.
DELIVERY_SECONDS = 1.0


def orders_of(client, channel: str) -> list[int]:
    return [json.loads(event.data)["order"] for event in log_events(client, channel)]


def arrived(client, channel: str, count: int) -> list[int]:
    """The channel's order ids once its log holds ``count`` events (fails after 1 s)."""
    return wait_for(lambda: len(orders_of(client, channel)) >= count and orders_of(client, channel),
                    DELIVERY_SECONDS, f"{count} event(s) on {channel}")


def test_a_commit_is_delivered_once_by_the_relay_thread(make_shop_app, make_config, channel,
                                                         publisher):
    shop = make_shop_app(make_config())
    client = shop.app.test_client()

    answer = client.post(f"/orders/{channel}")

    assert answer.status_code == 201
    assert arrived(publisher.client, channel, 1) == [answer.json["id"]]
    event = log_events(publisher.client, channel)[0]
    assert event.type == "order.created"
    wait_for(lambda: shop.gate.outbox.depth().rows == 0, DELIVERY_SECONDS, "the row marked")
    assert shop.gate.outbox.relay() == 0  # nothing left to relay: it was marked, not re-sent
    assert orders_of(publisher.client, channel) == [answer.json["id"]]


def test_a_rollback_no_commit_or_an_exception_after_publish_leaves_nothing(
        make_shop_app, make_config, channel, publisher):
    shop = make_shop_app(make_config())
    client = shop.app.test_client()

    assert client.post(f"/rollback/{channel}").status_code == 200
    assert client.post(f"/uncommitted/{channel}").status_code == 200
    assert client.post(f"/raise/{channel}").status_code == 500
    assert outbox_rows(shop.engine, shop.gate.outbox, channel) == 0
    barrier = client.post(f"/orders/{channel}").json["id"]

    assert arrived(publisher.client, channel, 1) == [barrier]
    assert outbox_rows(shop.engine, shop.gate.outbox, channel) == 1


def test_a_savepoint_rolled_back_drops_its_event_and_the_outer_commit_delivers(
        make_shop_app, make_config, channel, publisher):
    shop = make_shop_app(make_config())
    client = shop.app.test_client()
    inner = f"{channel}.inner"

    kept = client.post(f"/nested/{channel}/{inner}").json["id"]
    barrier = client.post(f"/orders/{inner}").json["id"]

    assert arrived(publisher.client, channel, 1) == [kept]
    assert arrived(publisher.client, inner, 1) == [barrier]


def test_an_event_published_in_a_released_savepoint_arrives_at_the_outer_commit(
        make_shop_app, make_config, channel, publisher):
    # The savepoint's release fires the session's commit events too: the relay must be woken
    # by the outer commit, not (uselessly) by the release, or the event waits for the sweep.
    shop = make_shop_app(make_config())

    created = shop.app.test_client().post(f"/released/{channel}").json["id"]

    assert arrived(publisher.client, channel, 1) == [created]


def test_events_in_and_out_of_savepoints_arrive_in_publish_order_without_the_dropped_one(
        make_shop_app, make_config, channel, publisher):
    shop = make_shop_app(make_config())

    assert shop.app.test_client().post(f"/interleaved/{channel}").status_code == 200

    arrived(publisher.client, channel, 3)
    steps = [json.loads(e.data)["step"] for e in log_events(publisher.client, channel)]
    assert steps == ["outer", "released", "last"]


def test_two_commits_in_one_request_arrive_both_in_order(make_shop_app, make_config, channel,
                                                         publisher):
    shop = make_shop_app(make_config())

    ids = shop.app.test_client().post(f"/twice/{channel}").json["ids"]

    assert arrived(publisher.client, channel, 2) == ids
    steps = [json.loads(e.data)["step"] for e in log_events(publisher.client, channel)]
    assert steps == ["first", "second"]


def test_publish_in_an_app_context_without_a_request(make_shop_app, make_config, channel,
                                                     publisher):
    shop = make_shop_app(make_config())

    with shop.app.app_context():
        assert shop.gate.publish(channel, {"order": 7}) is None
        shop.db.session.commit()
    with shop.app.app_context():  # queued, then the context ended without a commit
        shop.gate.publish(channel, {"order": 8})
    with shop.app.app_context():
        shop.gate.publish(channel, {"order": 9})
        shop.db.session.commit()

    assert arrived(publisher.client, channel, 2) == [7, 9]


def test_a_job_worker_publishes_through_a_connection_or_a_session(database_url, publisher,
                                                                   channel):
    engine = sa.create_engine(database_url)
    outbox = Outbox(engine, publisher)
    try:
        outbox.create_tables()
        with engine.begin() as connection:
            outbox.publish(connection, channel, {"order": 1}, "order.created")
        with engine.connect() as connection, connection.begin() as transaction:
            outbox.publish(connection, channel, {"order": 2})
            transaction.rollback()
        with Session(engine) as session, session.begin():
            outbox.publish(session, channel, {"order": 3})
        with Session(engine) as session:
            outbox.publish(session, channel, {"order": 4})
            session.rollback()

        assert orders_of(publisher.client, channel) == []  # nothing before the relay runs
        assert outbox.relay() == 2
        assert orders_of(publisher.client, channel) == [1, 3]
        assert outbox.relay() == 0
        assert outbox.depth().rows == 0
    finally:
        engine.dispose()
