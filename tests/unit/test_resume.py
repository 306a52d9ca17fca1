"""Resume (stream/resume.py) on a real redis-server with subscribers on socketpairs: where a
connection starts, the replay from the log, and the hand-off from replay to live — its gap
handling and its wait for a hub that stands behind. In-process, under gevent's loop without
monkey-patching (tests/unit/inprocess.py)."""

from __future__ import annotations

import gevent
import pytest
import redis

from eventgate.shared import keys, sse
from eventgate.stream.resume import Resume, Unavailable
from tests.servers import LOOPBACK, free_port
from tests.unit.inprocess import green_wait, limit_replays


def publish(publisher, channel: str, count: int) -> list[str]:
    """``count`` events on ``channel`` (type ``t``, data ``{"n": i}`` from 1); their ids."""
    return [publisher.publish(channel, {"n": n}, "t") for n in range(1, count + 1)]


def seen(peer) -> list[tuple[str, str]]:
    return [(event.type, event.data) for event in peer.events]


def t(*numbers: int) -> list[tuple[str, str]]:
    return [("t", f'{{"n":{n}}}') for n in numbers]


def pending_entry(channel: str, event_id: str, prev: str, n: int) -> tuple:
    """A live event as the hub leaves it in a replaying connection's ``pending``."""
    return (channel, event_id, prev, sse.event_body("t", f'{{"n":{n}}}'))


# -- where a connection starts --------------------------------------------------------------


def test_a_connection_starts_at_its_cursor_or_else_at_the_log_end(
    resume, publisher, channel, client
):
    other = channel + ".other"
    never = channel + ".never"
    ids = publish(publisher, channel, 3)
    [emptied] = publish(publisher, other, 1)
    client.xdel(keys.log_key(other), emptied)

    assert resume.positions([channel], {channel: ids[0]}) == {channel: ids[0]}
    assert resume.positions([channel, other, never], {}) == {
        channel: ids[2], other: emptied, never: "0-0",
    }


def test_a_channel_without_a_log_starts_at_0_0_in_one_round_trip(resume, client, channel):
    # XINFO STREAM (the second round trip) only for a log that exists with no entry.
    def xinfo_calls() -> int:
        return client.info("commandstats").get("cmdstat_xinfo|stream", {}).get("calls", 0)

    before = xinfo_calls()
    assert resume.positions([channel + ".never", channel + ".nor"], {}) == {
        channel + ".never": "0-0", channel + ".nor": "0-0",
    }
    assert xinfo_calls() == before


def test_a_channel_the_hub_follows_starts_where_the_hub_stands(
    hub, make_broker, make_subscriber, client, publisher, channel
):
    ids = publish(publisher, channel, 3)
    broker = make_broker()
    green_wait(lambda: broker.connected, 5, "the broker to connect")
    resume = Resume(hub, broker, client)
    subscriber, _ = make_subscriber([channel])
    hub.add(subscriber)
    hub.channels[channel].last = ids[1]  # behind the log's end: live events in flight

    assert resume.positions([channel], {}) == {channel: ids[1]}

    hub.channels[channel].backfilling = True  # a gap being read back: the hub is no guide
    assert resume.positions([channel], {}) == {channel: ids[2]}
    hub.channels[channel].backfilling = False
    broker.connected = False  # nor is a hub whose live feed is cut
    assert resume.positions([channel], {}) == {channel: ids[2]}


def test_positions_say_unavailable_when_redis_cannot_be_read(hub, resume, channel):
    dead = redis.Redis(host=LOOPBACK, port=free_port(), socket_connect_timeout=1)
    with pytest.raises(Unavailable):
        Resume(hub, resume.broker, dead).positions([channel], {})


# -- replay ---------------------------------------------------------------------------------


def test_replay_sends_every_event_after_the_position_in_log_order(
    hub, resume, make_subscriber, publisher, channel
):
    ids = publish(publisher, channel, 4)
    subscriber, peer = make_subscriber([channel])
    subscriber.positions[channel] = ids[0]

    resume.replay(subscriber, channel)

    peer.until(3)
    assert seen(peer) == t(2, 3, 4)
    assert [e.last_event_id for e in peer.events] == ids[1:]
    assert hub.replayed == 3


def test_replay_tells_of_events_the_log_no_longer_holds_before_what_follows(
    hub, resume, make_subscriber, publisher, channel, client
):
    ids = publish(publisher, channel, 5)
    client.xdel(keys.log_key(channel), ids[1], ids[2])  # trimmed, or lost with Redis's data
    subscriber, peer = make_subscriber([channel])
    subscriber.positions[channel] = ids[0]

    resume.replay(subscriber, channel)

    peer.until(3)
    lost = (sse.LOST_EVENT, f'{{"channel":"{channel}","last_seen":"{ids[0]}",'
                            f'"resumes_after":"{ids[2]}"}}')
    assert seen(peer) == [lost, *t(4, 5)]
    assert [e.last_event_id for e in peer.events] == [ids[2], ids[3], ids[4]]
    assert hub.lost == 1


# -- the hand-off ---------------------------------------------------------------------------


def test_the_hand_off_skips_what_the_replay_sent_and_releases_the_rest(
    hub, resume, make_subscriber, publisher, channel, monkeypatch
):
    limit_replays(resume, monkeypatch, 0)
    ids = publish(publisher, channel, 4)
    subscriber, peer = make_subscriber([channel])
    hub.add(subscriber)
    subscriber.positions[channel] = ids[2]  # the replay read up to event 3
    subscriber.pending = [pending_entry(channel, ids[n - 1], ids[n - 2], n) for n in (2, 3, 4)]
    hub.channels[channel].last = ids[3]

    resume.hand_off(subscriber, timeout=2)

    peer.until(1)
    assert seen(peer) == t(4)
    assert subscriber.live and subscriber.pending == []
    assert subscriber.positions[channel] == ids[3]


def test_a_gap_in_the_held_events_is_read_back_from_the_log_first(
    hub, resume, make_subscriber, publisher, channel, monkeypatch
):
    limit_replays(resume, monkeypatch, 1)
    ids = publish(publisher, channel, 4)
    subscriber, peer = make_subscriber([channel])
    hub.add(subscriber)
    subscriber.positions[channel] = ids[0]
    # Events 2 and 3 were published after the replay read the log and before the subscription
    # delivered anything: the first held event is 4, whose prev is 3, not the position (1).
    subscriber.pending = [pending_entry(channel, ids[3], ids[2], 4)]
    hub.channels[channel].last = ids[3]

    resume.hand_off(subscriber, timeout=2)

    peer.until(3)
    assert seen(peer) == t(2, 3, 4)  # in order, and 4 once although it was held too
    assert subscriber.live


def test_the_hand_off_waits_for_a_hub_that_stands_behind(
    hub, resume, make_subscriber, publisher, channel, monkeypatch
):
    limit_replays(resume, monkeypatch, 0)
    ids = publish(publisher, channel, 3)
    subscriber, peer = make_subscriber([channel])
    hub.add(subscriber)
    subscriber.positions[channel] = ids[2]  # the replay read event 3 from the log...
    hub.channels[channel].last = ids[1]  # ...which the hub has not broadcast yet
    subscriber.pending = [pending_entry(channel, ids[1], ids[0], 2)]  # seen once it runs
    waiting = gevent.spawn(resume.hand_off, subscriber, 5)

    green_wait(lambda: subscriber.pending == [], 2, "the hand-off to take the held events")
    assert not subscriber.live and not waiting.dead
    hub.broadcast(channel, ids[2], ids[1], sse.event_body("t", '{"n":3}'))
    waiting.get(timeout=5)

    assert subscriber.live
    assert peer.drain() == b""  # event 3 came from the replay: the live copy is not repeated


def test_a_hub_that_never_catches_up_ends_the_hand_off(hub, resume, make_subscriber, channel):
    subscriber, _ = make_subscriber([channel])
    hub.add(subscriber)
    subscriber.positions[channel] = "5-0"
    hub.channels[channel].last = "4-0"

    with pytest.raises(Unavailable):
        resume.hand_off(subscriber, timeout=0.05)
    assert not subscriber.live


def test_a_channel_with_no_live_event_yet_takes_the_position_of_the_first_connection(
    hub, resume, make_subscriber, channel
):
    subscriber, _ = make_subscriber([channel])
    hub.add(subscriber)
    subscriber.positions[channel] = "7-0"

    resume.hand_off(subscriber, timeout=1)

    assert subscriber.live and hub.channels[channel].last == "7-0"


# -- the whole opening ----------------------------------------------------------------------


def test_open_replays_from_the_cursor_then_delivers_live_exactly_once(
    hub, make_broker, make_subscriber, client, publisher, channel, redis_server
):
    ids = publish(publisher, channel, 3)
    broker = make_broker()
    resume = Resume(hub, broker, client)
    subscriber, peer = make_subscriber([channel])

    resume.open(subscriber, resume.positions([channel], {channel: ids[0]}), timeout=5)

    assert subscriber.live
    assert redis_server.client().pubsub_numsub(keys.live_channel(channel))[0][1] == 1
    publisher.publish(channel, {"n": 4}, "t")
    peer.until(3)
    assert seen(peer) == t(2, 3, 4)
    assert peer.drain() == b""
