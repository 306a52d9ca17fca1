"""Hub (stream/hub.py) with real subscribers on socketpairs: registration and release, fan-out,
coalescing of a batch, loss notices, heartbeats and expiry. In-process, under gevent's loop
without monkey-patching (tests/unit/inprocess.py)."""

from __future__ import annotations

from eventgate.shared import sse
from eventgate.stream.heartbeat import token_expired_words
from tests.unit.inprocess import green_wait
from tests.wsse import ParsedEvent


def body(n: int) -> bytes:
    return sse.event_body("t", str(n))


def test_add_names_only_the_channels_new_to_this_process(hub, make_subscriber):
    first, _ = make_subscriber(["a", "b"])
    second, _ = make_subscriber(["b", "c"])

    assert hub.add(first) == ["a", "b"]
    assert hub.add(second) == ["c"]


def test_a_channel_is_released_once_after_its_last_local_subscriber_left(hub, make_subscriber):
    released = []
    hub.when_empty(released.append)
    first, _ = make_subscriber(["a", "b"])
    second, _ = make_subscriber(["a"])
    hub.add(first)
    hub.add(second)

    first.close()
    assert released == ["b"]
    assert set(hub.channels) == {"a"}

    second.close()
    assert released == ["b", "a"]
    assert hub.channels == {} and hub.subscribers == set()


def test_a_client_that_hangs_up_releases_its_channel(hub, make_subscriber):
    released = []
    hub.when_empty(released.append)
    subscriber, peer = make_subscriber(["a"], live_at="0-0")

    peer.sock.close()

    green_wait(lambda: released == ["a"], 5, "the channel's release after the hang-up")
    assert subscriber not in hub.subscribers


def test_broadcast_reaches_every_subscriber_of_the_channel_and_no_other(hub, make_subscriber):
    one, one_peer = make_subscriber(["a"], live_at="0-0")
    two, two_peer = make_subscriber(["a"], live_at="0-0")
    other, other_peer = make_subscriber(["b"], live_at="0-0")

    hub.broadcast("a", "1-0", "0-0", body(1))

    for peer in (one_peer, two_peer):
        assert peer.read() == sse.id_line("1-0") + body(1)
    assert other_peer.drain() == b""
    assert hub.channels["a"].last == "1-0"
    assert (hub.delivered, hub.events) == (2, 1)


def test_broadcast_to_a_channel_nobody_here_follows_is_dropped(hub):
    hub.broadcast("nobody", "1-0", "0-0", body(1))
    assert hub.events == 0


def test_a_batch_reaches_a_live_one_channel_connection_in_one_send(hub, make_subscriber):
    subscriber, peer = make_subscriber(["a"], live_at="0-0", counted=True)
    batch = [("a", "1-0", "0-0", body(1)), ("b", "1-1", "0-0", body(9)),
             ("a", "2-0", "1-0", body(2)), ("a", "3-0", "2-0", body(3))]

    hub.broadcast_all(batch)

    assert subscriber.sock.sends == 1
    assert [(e.last_event_id, e.data) for e in peer.until(3)] == [
        ("1-0", "1"), ("2-0", "2"), ("3-0", "3"),
    ]
    assert subscriber.positions == {"a": "3-0"}


def test_a_batch_reaches_multi_channel_connections_one_by_one_in_publish_order(
    hub, make_subscriber
):
    subscriber, peer = make_subscriber(["a", "b"], live_at="0-0")
    batch = [("a", "1-0", "0-0", body(1)), ("b", "1-1", "0-0", body(2)),
             ("a", "2-0", "1-0", body(3))]

    hub.broadcast_all(batch)

    assert [(e.last_event_id, e.data) for e in peer.until(3)] == [
        ("a=1-0,b=0-0", "1"), ("b=1-1,a=1-0", "2"), ("a=2-0,b=1-1", "3"),
    ]


def test_a_batch_waits_in_pending_for_a_connection_still_replaying(hub, make_subscriber):
    subscriber, peer = make_subscriber(["a"])
    hub.add(subscriber)
    batch = [("a", "1-0", "0-0", body(1)), ("a", "2-0", "1-0", body(2))]

    hub.broadcast_all(batch)

    assert subscriber.pending == [(name, i, p, b) for name, i, p, b in batch]
    assert peer.drain() == b""


def test_a_loss_is_told_to_live_connections_and_held_for_replaying_ones(hub, make_subscriber):
    following, peer = make_subscriber(["a"], live_at="0-0")
    replaying, _ = make_subscriber(["a"])
    hub.add(replaying)

    hub.broadcast_loss("a", "1-0", "4-0")

    [event] = peer.until(1)
    assert event == ParsedEvent(
        sse.LOST_EVENT, '{"channel":"a","last_seen":"1-0","resumes_after":"4-0"}', "4-0"
    )
    assert replaying.pending == [("a", "4-0", "1-0", sse.lost_body("a", "1-0", "4-0"))]
    assert hub.channels["a"].last == "4-0"
    assert hub.lost == 2


def test_a_heartbeat_goes_only_to_live_connections_quiet_for_two_beats(hub, make_subscriber):
    quiet, quiet_peer = make_subscriber(["a"], live_at="0-0")
    busy, busy_peer = make_subscriber(["b"], live_at="0-0")
    replaying, replaying_peer = make_subscriber(["c"])
    hub.add(replaying)
    beat = sse.comment("hb")

    hub.beat(beat)
    assert quiet_peer.drain() == b""  # one half period quiet: not yet
    hub.broadcast("b", "1-0", "0-0", body(1))
    hub.beat(beat)

    assert quiet_peer.read() == beat
    assert busy_peer.read() == sse.id_line("1-0") + body(1)  # and no heartbeat
    assert busy_peer.drain() == b""
    assert replaying_peer.drain() == b""


def test_expire_ends_only_the_streams_whose_token_expired(hub, make_subscriber):
    expired, expired_peer = make_subscriber(["a"], live_at="0-0", expires_at=100.0)
    valid, valid_peer = make_subscriber(["a"], live_at="0-0", expires_at=300.0)

    hub.expire(200.0, token_expired_words)

    expired_peer.until_eof()
    assert expired_peer.events == [
        ParsedEvent("eventgate.token_expired", '{"expired_at":100.0}', "0-0")
    ]
    assert hub.subscribers == {valid}
    assert valid_peer.drain() == b""


def test_finish_all_ends_every_stream_with_its_own_last_words(hub, make_subscriber):
    released = []
    hub.when_empty(released.append)
    peers = [make_subscriber([name], live_at="0-0")[1] for name in ("a", "b")]
    words = iter([sse.retry(100), sse.retry(200)])

    hub.finish_all(lambda: next(words))

    assert sorted(peer.until_eof() for peer in peers) == [sse.retry(100), sse.retry(200)]
    assert hub.subscribers == set() and sorted(released) == ["a", "b"]


def test_closed_connections_are_counted_by_reason(hub, make_subscriber):
    slow, _ = make_subscriber(["a"], live_at="0-0", max_queue_bytes=1024)
    gone, _ = make_subscriber(["a"], live_at="0-0")
    gone.send(b"12345")

    slow.send(b"x" * (1 << 20))
    gone.close()

    assert slow.close_reason == "slow"
    assert hub.slow_disconnects == 1
    assert hub.closed_written >= 5
