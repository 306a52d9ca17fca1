"""Loss is never silent across a failover (shared/events.py:read_from and its readers: Resume's
replay and hand-off, the broker's backfill), on the session's real redis-server with logs built
by hand as a failover leaves them. In-process, under gevent's loop (tests/unit/inprocess.py).

The story of every test: a client saw E1..E5 on the old primary; the replica promoted in its
place had only E1..E3; the new primary then stored E6' (prev E3) with an id above E5 — or, its
clock behind, below E5. The ids are small and written by hand so that both orders are exact.
"""

from __future__ import annotations

import json

import pytest

from eventgate.shared import keys, sse
from eventgate.shared.events import START, Event, read_from
from eventgate.stream.resume import Resume
from tests.unit.inprocess import green_wait, limit_replays

E1, E2, E3, E4, E5 = "1000-0", "2000-0", "3000-0", "4000-0", "5000-0"
ABOVE, BELOW = "6000-0", "3500-0"  # E6' on the new primary: its id above E5, or below it
LATER = "7000-0"


def store(client, channel: str, *events: tuple[str, str, int]) -> None:
    """Append ``(id, prev, n)`` events to the channel's log with explicit ids."""
    for event_id, prev, n in events:
        client.xadd(keys.log_key(channel), {"type": "t", "data": f'{{"n":{n}}}', "prev": prev},
                    id=event_id)


def new_log(client, channel: str, e6: str | None = None) -> None:
    """The promoted replica's log: E1..E3, then E6' (n=6) under ``e6`` when given."""
    store(client, channel, (E1, START, 1), (E2, E1, 2), (E3, E2, 3))
    if e6 is not None:
        store(client, channel, (e6, E3, 6))


def received(peer) -> list[tuple]:
    """What a client got, in order: ``("lost", last_seen, resumes_after, id)`` for a loss
    notice, ``(n, id)`` for an event."""
    out = []
    for event in peer.events:
        data = json.loads(event.data)
        if event.type == sse.LOST_EVENT:
            out.append(("lost", data["last_seen"], data["resumes_after"], event.last_event_id))
        else:
            out.append((data["n"], event.last_event_id))
    return out


def payload(channel: str, event_id: str, prev: str, n: int) -> bytes:
    return Event(channel, event_id, prev, "t", f'{{"n":{n}}}').to_payload()


class Counting:
    """A Redis client that counts the commands sent through it (each is one round trip)."""

    def __init__(self, client) -> None:
        self._client = client
        self.commands: list[str] = []

    def xrange(self, *args, **kwargs):
        self.commands.append("XRANGE")
        return self._client.xrange(*args, **kwargs)

    def xrevrange(self, *args, **kwargs):
        self.commands.append("XREVRANGE")
        return self._client.xrevrange(*args, **kwargs)


# -- the rule -------------------------------------------------------------------------------


def test_a_position_the_log_holds_costs_one_round_trip(client, channel):
    new_log(client, channel, ABOVE)
    counting = Counting(client)

    page = read_from(counting, channel, E3)

    assert page.after == E3 and [e[0] for e in page.entries] == [ABOVE.encode()]
    assert counting.commands == ["XRANGE"]
    assert read_from(counting, channel, ABOVE) == (ABOVE, [])  # nothing new: still one


def test_a_position_the_log_no_longer_holds_goes_on_from_the_newest_older_entry(client, channel):
    new_log(client, channel, ABOVE)

    page = read_from(client, channel, E5)

    assert page.after == E3 and [e[0] for e in page.entries] == [ABOVE.encode()]
    new_log(client, channel + ".below", BELOW)
    assert read_from(client, channel + ".below", E5) == (BELOW, [])


def test_a_trimmed_position_or_a_gone_log_is_no_divergence(client, channel):
    new_log(client, channel, ABOVE)
    client.xtrim(keys.log_key(channel), minid=E3)  # E1, E2 trimmed

    assert read_from(client, channel, E1).after == E1  # the prev rule tells the rest
    assert read_from(client, channel + ".gone", E5) == (E5, [])
    assert read_from(client, channel, START).after == START


# -- resuming clients -----------------------------------------------------------------------


@pytest.mark.parametrize(("e6", "expected"), [
    (ABOVE, [("lost", E5, E3, E3), (6, ABOVE), (7, LATER)]),
    # Its clock behind: E6' sorts below E5. The log cannot tell E6' from what the client saw
    # (docs/protocol.md), so it is inside the notice's range; what follows comes after it.
    (BELOW, [("lost", E5, BELOW, BELOW), (7, LATER)]),
])
def test_a_client_that_saw_lost_events_is_told_then_gets_the_new_log(
    hub, resume, make_subscriber, client, channel, e6, expected
):
    new_log(client, channel, e6)
    store(client, channel, (LATER, e6, 7))
    subscriber, peer = make_subscriber([channel])
    subscriber.positions[channel] = E5

    resume.replay(subscriber, channel)

    peer.until(len(expected))
    assert received(peer) == expected
    assert subscriber.positions[channel] == LATER and hub.lost == 1


def test_a_client_is_told_at_once_even_before_the_new_primary_stores_anything(
    resume, make_subscriber, client, channel
):
    new_log(client, channel)
    subscriber, peer = make_subscriber([channel])
    subscriber.positions[channel] = E5

    resume.replay(subscriber, channel)

    peer.until(1)
    assert received(peer) == [("lost", E5, E3, E3)]
    assert subscriber.positions[channel] == E3


@pytest.mark.parametrize("e6", [ABOVE, BELOW])
def test_a_client_that_never_saw_the_lost_events_gets_the_new_ones_without_a_notice(
    resume, make_subscriber, client, channel, e6
):
    new_log(client, channel, e6)
    subscriber, peer = make_subscriber([channel])
    subscriber.positions[channel] = E3

    resume.replay(subscriber, channel)

    peer.until(1)
    assert received(peer) == [(6, e6)]
    assert peer.drain() == b""


def test_a_whole_opening_from_a_diverged_cursor_then_live(
    hub, make_broker, make_subscriber, client, channel, publisher
):
    new_log(client, channel, BELOW)
    resume = Resume(hub, make_broker(), client)
    subscriber, peer = make_subscriber([channel])

    resume.open(subscriber, resume.positions([channel], {channel: E5}), timeout=5)
    new_id = publisher.publish(channel, {"n": 7}, "t")  # chained to E6' by the script

    peer.until(2)
    assert received(peer) == [("lost", E5, BELOW, BELOW), (7, new_id)]
    assert subscriber.live and hub.channels[channel].last == new_id


# -- the hand-off ---------------------------------------------------------------------------


def test_a_held_loss_notice_that_points_below_the_position_is_released(
    hub, resume, make_subscriber, channel
):
    subscriber, peer = make_subscriber([channel])
    hub.add(subscriber)
    subscriber.positions[channel] = E5
    hub.channels[channel].last = E5
    hub.broadcast_loss(channel, E5, BELOW)  # the hub noticed while the client replayed

    resume.hand_off(subscriber, timeout=2)

    peer.until(1)
    assert received(peer) == [("lost", E5, BELOW, BELOW)]
    assert subscriber.live and subscriber.positions[channel] == BELOW


def test_a_held_event_the_new_log_does_not_hold_does_not_stall_the_hand_off(
    hub, resume, make_subscriber, client, channel, monkeypatch
):
    limit_replays(resume, monkeypatch, 1)
    new_log(client, channel)
    subscriber, peer = make_subscriber([channel])
    hub.add(subscriber)
    subscriber.positions[channel] = E3
    hub.channels[channel].last = E3
    # E6 came live from the old primary (prev E5); the new log has neither.
    subscriber.pending = [(channel, "6500-0", E5, sse.event_body("t", '{"n":66}'))]

    resume.hand_off(subscriber, timeout=2)

    assert subscriber.live and subscriber.pending == []
    assert peer.drain() == b""


# -- the hub's live feed --------------------------------------------------------------------


def diverged_hub(hub, make_broker, make_subscriber, client, channel, at, e6=None):
    """A broker (not started: the test calls on_message) whose hub delivered up to ``at`` from
    the old primary, a live client there, and the new log; ``(broker, peer)``."""
    broker = make_broker(start=False)
    _, peer = make_subscriber([channel], live_at=at)
    hub.channels[channel].last = at
    new_log(client, channel, e6)
    return broker, peer


def settled(broker, peer, channel: str, count: int) -> None:
    """Wait for ``count`` events in all and the end of the channel's backfill."""
    peer.until(count)
    green_wait(lambda: not broker.hub.channels[channel].backfilling, 5, "the backfill to end")


@pytest.mark.parametrize(("e6", "expected"), [
    (ABOVE, [("lost", E5, E3, E3), (6, ABOVE)]),
    (BELOW, [("lost", E5, BELOW, BELOW)]),  # E6' inside the notice's range, never dropped alone
])
def test_a_live_event_of_the_new_primary_makes_the_hub_tell_and_follow_the_new_log(
    hub, make_broker, make_subscriber, client, channel, e6, expected
):
    broker, peer = diverged_hub(hub, make_broker, make_subscriber, client, channel, E5, e6)

    broker.on_message(channel, payload(channel, e6, E3, 6))
    settled(broker, peer, channel, len(expected))
    broker.on_message(channel, payload(channel, LATER, e6, 7))  # in sequence on the new log

    peer.until(len(expected) + 1)
    assert received(peer) == [*expected, (7, LATER)]
    assert hub.channels[channel].last == LATER and hub.lost == 1


def test_after_the_reconnect_the_hub_moves_to_the_new_log_before_its_first_event(
    hub, make_broker, make_subscriber, client, channel
):
    broker, peer = diverged_hub(hub, make_broker, make_subscriber, client, channel, E5)

    broker.backfill_all()  # what the broker does after it reconnected to the new primary
    settled(broker, peer, channel, 1)
    broker.on_message(channel, payload(channel, BELOW, E3, 6))  # sorts below E5: delivered

    peer.until(2)
    assert received(peer) == [("lost", E5, E3, E3), (6, BELOW)]
    assert hub.channels[channel].last == BELOW


def test_held_live_events_the_new_log_does_not_hold_are_dropped_not_held_forever(
    hub, make_broker, make_subscriber, client, channel
):
    broker, peer = diverged_hub(hub, make_broker, make_subscriber, client, channel, E4)

    broker.on_message(channel, payload(channel, "6500-0", E5, 66))  # the old primary's
    settled(broker, peer, channel, 1)
    broker.on_message(channel, payload(channel, ABOVE, E3, 6))

    peer.until(2)
    assert received(peer) == [("lost", E4, E3, E3), (6, ABOVE)]
    assert hub.channels[channel].held == []


# -- a log that expired (no event for the age limit) ----------------------------------------


def test_a_channel_whose_log_expired_starts_at_0_0_and_a_cursor_in_it_waits_quietly(
    resume, make_subscriber, client, channel
):
    new_log(client, channel)
    client.delete(keys.log_key(channel))  # what its expiry does

    assert resume.positions([channel], {}) == {channel: START}
    subscriber, peer = make_subscriber([channel])
    subscriber.positions[channel] = E3
    resume.replay(subscriber, channel)
    assert peer.drain() == b"" and subscriber.positions[channel] == E3


def test_the_first_event_of_a_new_log_tells_a_reader_of_the_old_one(
    hub, resume, make_broker, make_subscriber, client, channel, publisher
):
    broker, live = diverged_hub(hub, make_broker, make_subscriber, client, channel, E3)
    client.delete(keys.log_key(channel))
    first = publisher.publish(channel, {"n": 1}, "t")  # prev 0-0: the log starts again
    resuming, peer = make_subscriber([channel])
    resuming.positions[channel] = E3

    broker.on_message(channel, payload(channel, first, START, 1))
    resume.replay(resuming, channel)

    settled(broker, live, channel, 2)
    peer.until(2)
    # Honest, not exact: nothing can prove no event came after E3 before the log expired.
    assert received(live) == received(peer) == [("lost", E3, START, START), (1, first)]


def test_a_hand_off_to_a_hub_on_the_replaced_log_makes_it_move_and_completes(
    hub, make_broker, make_subscriber, client, channel
):
    # The hub delivered E5 and has not noticed the failover (no event, no reconnect since); a
    # client replayed the new log up to E3.
    new_log(client, channel)
    resume = Resume(hub, make_broker(start=False), client)
    subscriber, peer = make_subscriber([channel])
    hub.add(subscriber)
    hub.channels[channel].last = E5
    subscriber.positions[channel] = E3

    resume.hand_off(subscriber, timeout=3)

    assert subscriber.live and hub.channels[channel].last == E3
    assert peer.drain() == b""  # it never saw E4 and E5: no notice, and none twice
