"""Broker (stream/broker.py) on a real redis-server, feeding a hub with subscribers on
socketpairs: one pub/sub connection, subscriptions that follow the local clients, events of one
wake-up coalesced, and the backfill that mends gaps in the live feed. In-process, under gevent's
loop without monkey-patching (tests/unit/inprocess.py)."""

from __future__ import annotations

import json
import os

import gevent
import gevent.event
import redis

from eventgate.shared import keys, sse
from eventgate.shared.events import START, Event, id_key
from eventgate.shared.redisconn import connect_pubsub
from eventgate.stream.broker import Replies
from eventgate.stream.resume import Resume
from tests.unit.inprocess import green_wait

WAIT = 5.0


def publish(publisher, channel: str, count: int, first: int = 1) -> list[str]:
    """Events ``first``… on ``channel`` (type ``t``, data ``{"n": i}``); their ids."""
    return [publisher.publish(channel, {"n": n}, "t") for n in range(first, first + count)]


def payload(channel: str, event_id: str, prev: str, n: int) -> bytes:
    """The pub/sub payload of event ``n``, as the publish script sends it."""
    return Event(channel, event_id, prev, "t", f'{{"n":{n}}}').to_payload()


def numbers(peer) -> list[int]:
    return [json.loads(event.data)["n"] for event in peer.events if event.type == "t"]


def opened(resume, make_subscriber, channels, **options):
    """A subscriber opened through Resume at the log's end, live."""
    subscriber, peer = make_subscriber(channels, **options)
    resume.open(subscriber, resume.positions(list(channels), {}), timeout=WAIT)
    assert subscriber.live
    return subscriber, peer


def pubsub_connections(redis_server) -> list[dict]:
    name = f"eventgate-stream-{os.getpid()}"
    return [c for c in redis_server.client().client_list() if c.get("name") == name]


def subscribers_of(redis_server, channel: str) -> int:
    return redis_server.client().pubsub_numsub(keys.live_channel(channel))[0][1]


def test_one_pubsub_connection_whatever_the_clients_and_channels(
    hub, make_broker, make_subscriber, client, channel, redis_server
):
    resume = Resume(hub, make_broker(), client)
    for n in range(6):
        opened(resume, make_subscriber, [f"{channel}.{n % 3}", f"{channel}.x"])

    green_wait(lambda: len(pubsub_connections(redis_server)) == 1, WAIT,
               "one pub/sub connection in CLIENT LIST")
    assert all(subscribers_of(redis_server, f"{channel}.{n}") == 1 for n in range(3))


def test_a_live_event_reaches_each_subscriber_once(
    hub, make_broker, make_subscriber, client, publisher, channel
):
    resume = Resume(hub, make_broker(), client)
    peers = [opened(resume, make_subscriber, [channel])[1] for _ in range(2)]

    [event_id] = publish(publisher, channel, 1)

    for peer in peers:
        [event] = peer.until(1)
        assert (event.last_event_id, event.data) == (event_id, '{"n":1}')
    assert all(peer.drain() == b"" for peer in peers)


def test_the_subscription_is_released_after_the_last_local_client_left(
    hub, make_broker, make_subscriber, client, channel, redis_server
):
    resume = Resume(hub, make_broker(), client)
    first, _ = opened(resume, make_subscriber, [channel])
    _, second_peer = opened(resume, make_subscriber, [channel])
    sentinel = wait_for_the_janitor(resume, make_subscriber, channel, redis_server)

    first.close()
    sentinel()
    assert subscribers_of(redis_server, channel) == 1  # still followed here

    second_peer.sock.close()  # the last client hangs up
    green_wait(lambda: subscribers_of(redis_server, channel) == 0, WAIT,
               "UNSUBSCRIBE after the last client left")
    assert channel not in hub.channels


def test_a_client_arriving_as_the_last_one_leaves_keeps_the_subscription(
    hub, make_broker, make_subscriber, client, publisher, channel, redis_server
):
    resume = Resume(hub, make_broker(), client)
    leaving, _ = opened(resume, make_subscriber, [channel])
    sentinel = wait_for_the_janitor(resume, make_subscriber, channel, redis_server)

    leaving.close()  # the broker is told to release the channel...
    _, peer = opened(resume, make_subscriber, [channel])  # ...and a new client wants it again
    sentinel()

    assert subscribers_of(redis_server, channel) == 1
    publish(publisher, channel, 1)
    peer.until(1)
    assert numbers(peer) == [1]


def wait_for_the_janitor(resume, make_subscriber, channel, redis_server):
    """A client on a channel of its own; the returned function closes it and waits until its
    channel is unsubscribed: by then the broker has handled every release before it."""
    other = channel + ".sentinel"
    subscriber, _ = opened(resume, make_subscriber, [other])

    def sentinel() -> None:
        subscriber.close()
        green_wait(lambda: subscribers_of(redis_server, other) == 0, WAIT,
                   "the sentinel channel's UNSUBSCRIBE")

    return sentinel


def test_a_channel_wanted_while_the_broker_connects_is_subscribed(
    hub, make_broker, make_subscriber, client, publisher, channel, monkeypatch
):
    """In a worker, writing on the new pub/sub connection yields (the connect, the sends under
    gevent's patched sockets): streams that queued while the worker booted open meanwhile, and
    their channels must be subscribed too. Left out, every stream on such a channel waited for a
    confirmation that never came and ended with "redis unavailable, retry", for as long as the
    channel kept a local subscriber (the intermittent stall of the kill -9 tests in
    tests/stream/test_faults.py). These tests run unpatched: the yield is made explicit here."""
    writing = gevent.event.Event()
    write = redis.client.PubSub.execute_command

    def yielding_write(pubsub, *args):
        writing.set()
        gevent.sleep(0.05)  # what a patched socket does while Redis answers: the loop runs
        return write(pubsub, *args)

    monkeypatch.setattr(redis.client.PubSub, "execute_command", yielding_write)
    resume = Resume(hub, make_broker(), client)
    # The broker is inside its first write on the new connection (redis-py's subscribe goes
    # through PubSub.execute_command: were it not, this test would prove nothing).
    assert writing.wait(WAIT), "the broker wrote nothing through PubSub.execute_command"
    subscriber, peer = make_subscriber([channel])

    resume.open(subscriber, {channel: START}, timeout=WAIT)

    assert subscriber.live
    publish(publisher, channel, 1)
    peer.until(1)
    assert numbers(peer) == [1]


def test_events_of_one_wake_up_reach_a_live_connection_in_one_send(
    hub, make_broker, make_subscriber, client, publisher, channel
):
    resume = Resume(hub, make_broker(), client)
    subscriber, peer = opened(resume, make_subscriber, [channel], counted=True)
    sends = subscriber.sock.sends

    # One publish of five events: Redis writes them to the pub/sub connection together, so the
    # broker's next wake-up reads them all.
    publisher.publish_many([publisher.draft(channel, {"n": n}, "t") for n in range(1, 6)])

    peer.until(5)
    assert numbers(peer) == [1, 2, 3, 4, 5]
    assert subscriber.sock.sends - sends == 1


def test_a_gap_in_the_live_feed_is_backfilled_in_order_with_held_events_once(
    hub, make_broker, make_subscriber, publisher, channel
):
    broker = make_broker(start=False)  # pub/sub replaced by the test's on_message calls
    _, peer = make_subscriber([channel], live_at="0-0")
    ids = publish(publisher, channel, 5)
    broker.on_message(channel, payload(channel, ids[0], "0-0", 1))
    peer.until(1)

    # Pub/sub lost events 2 and 3; 4 and 5 arrive, and one more not in the log read yet.
    later = f"{id_key(ids[4])[0] + 1000}-0"
    broker.on_message(channel, payload(channel, ids[3], ids[2], 4))
    broker.on_message(channel, payload(channel, ids[4], ids[3], 5))
    broker.on_message(channel, payload(channel, later, ids[4], 6))
    assert peer.drain() == b""  # held: nothing out of order goes out

    peer.until(6)
    assert numbers(peer) == [1, 2, 3, 4, 5, 6]
    assert [e.last_event_id for e in peer.events] == [*ids, later]
    green_wait(lambda: not hub.channels[channel].backfilling, WAIT, "the backfill to end")
    assert broker.backfills == 1 and hub.channels[channel].last == later


def test_a_backfill_past_events_the_log_lost_sends_a_loss_notice_first(
    hub, make_broker, make_subscriber, publisher, channel, client
):
    broker = make_broker(start=False)
    _, peer = make_subscriber([channel], live_at="0-0")
    ids = publish(publisher, channel, 4)
    broker.on_message(channel, payload(channel, ids[0], "0-0", 1))
    client.xdel(keys.log_key(channel), ids[1], ids[2])

    broker.on_message(channel, payload(channel, ids[3], ids[2], 4))

    peer.until(3)
    assert [(e.type, e.last_event_id) for e in peer.events] == [
        ("t", ids[0]), (sse.LOST_EVENT, ids[2]), ("t", ids[3]),
    ]
    assert hub.lost == 1


def test_after_a_reconnect_what_was_published_meanwhile_is_backfilled(
    hub, make_broker, make_subscriber, client, publisher, channel, redis_server
):
    broker = make_broker()
    resume = Resume(hub, broker, client)
    _, peer = opened(resume, make_subscriber, [channel])
    publish(publisher, channel, 1)
    peer.until(1)

    [connection] = green_wait(lambda: len(found := pubsub_connections(redis_server)) == 1
                              and found, WAIT, "the one pub/sub connection")
    redis_server.client().client_kill_filter(_id=connection["id"])
    publish(publisher, channel, 2, first=2)  # pub/sub is gone: only the log has these

    peer.until(3)
    assert numbers(peer) == [1, 2, 3]
    assert broker.reconnects == 1 and broker.backfills >= 1
    publish(publisher, channel, 1, first=4)  # and live delivery resumed
    peer.until(4)
    assert numbers(peer) == [1, 2, 3, 4]


def test_the_pubsub_connection_is_read_by_our_own_hiredis_reader(config):
    """docs/internals.md: Replies reads redis-py's ``connection._sock`` with a hiredis reader of
    its own. Without the private attribute (a redis-py upgrade) or without hiredis it falls back
    to redis-py's parser, one reply per call — still correct, so only this test notices."""
    pubsub = connect_pubsub(config).pubsub()
    pubsub.subscribe("eventgate-test.replies")  # connects, as the broker's first subscribe does
    try:
        replies = Replies(pubsub)
        assert replies._reader is not None, "the broker fell back to redis-py's parser"
        assert [b"subscribe", b"eventgate-test.replies", 1] in replies.read()
        replies.close()
    finally:
        pubsub.close()
