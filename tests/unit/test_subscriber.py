"""Subscriber (stream/subscriber.py) over a real socketpair: what it writes, what it queues, when
it gives up on a slow client, and how it notices one that left. In-process, under gevent's loop
without monkey-patching (tests/unit/inprocess.py)."""

from __future__ import annotations

from eventgate.shared import sse
from tests.unit.inprocess import green_wait
from tests.wsse import ParsedEvent

BODY = sse.event_body("t", '{"n":1}')
#: Far more than any socketpair's kernel buffer takes at once.
HUGE = 1 << 20


def frame(event_id: str) -> bytes:
    return sse.id_line(event_id) + BODY


def test_a_live_one_channel_connection_sends_the_shared_frame_as_is(make_subscriber):
    subscriber, peer = make_subscriber(["a"])
    subscriber.live = True

    subscriber.deliver("a", "5-0", "4-0", BODY, frame("5-0"))

    assert peer.read() == frame("5-0")
    assert subscriber.positions == {"a": "5-0"}
    assert subscriber.written == len(frame("5-0"))


def test_a_multi_channel_connection_writes_its_own_cursor_event_channel_first(make_subscriber):
    subscriber, peer = make_subscriber(["a", "b"])
    subscriber.positions.update({"a": "1-0", "b": "2-0"})
    subscriber.live = True

    subscriber.deliver("b", "3-0", "2-0", BODY, frame("3-0"))

    assert peer.read() == sse.id_line("b=3-0,a=1-0") + BODY


def test_before_the_hand_off_live_events_wait_in_pending_and_nothing_is_written(make_subscriber):
    subscriber, peer = make_subscriber(["a"])

    subscriber.deliver("a", "5-0", "4-0", BODY, frame("5-0"))

    assert subscriber.pending == [("a", "5-0", "4-0", BODY)]
    assert peer.drain() == b""
    assert subscriber.positions == {"a": None}


def test_emit_moves_the_position_and_names_only_known_positions(make_subscriber):
    subscriber, peer = make_subscriber(["a", "b", "c"])
    subscriber.positions["c"] = "7-0"

    subscriber.emit("a", "1-0", BODY)

    assert peer.read() == sse.id_line("a=1-0,c=7-0") + BODY


def test_corked_emits_go_out_in_one_send(make_subscriber):
    subscriber, peer = make_subscriber(["a"], counted=True)
    subscriber.cork()
    for n in range(1, 6):
        subscriber.emit("a", f"{n}-0", BODY)
    assert subscriber.sock.sends == 0
    subscriber.uncork()

    assert subscriber.sock.sends == 1
    assert [e.last_event_id for e in peer.until(5)] == [f"{n}-0" for n in range(1, 6)]


def test_only_what_the_kernel_refuses_is_queued_and_the_writer_flushes_it_in_order(
    make_subscriber,
):
    subscriber, peer = make_subscriber(["a"], max_queue_bytes=2 * HUGE)
    subscriber.send(b"small\n")
    assert not subscriber.backlog

    big = b"x" * HUGE
    subscriber.send(big)
    assert subscriber.backlog_bytes > 0  # the kernel did not take it all
    subscriber.send(b"after\n")  # queued behind the backlog, never sent ahead of it

    expected = b"small\n" + big + b"after\n"
    assert peer.until_size(len(expected), timeout=10) == expected
    assert not subscriber.closed
    assert subscriber.backlog_bytes == 0 and subscriber._writer is None
    assert subscriber.written == len(expected)


def test_a_backlog_past_its_byte_bound_closes_a_slow_client(make_subscriber):
    closed = []
    subscriber, peer = make_subscriber(["a"], max_queue_bytes=HUGE // 4, on_close=closed.append)

    subscriber.send(b"x" * HUGE)

    assert subscriber.closed and subscriber.close_reason == "slow"
    assert closed == [subscriber]
    assert not subscriber.backlog
    peer.until_eof()


def test_a_backlog_past_its_frame_bound_closes_a_slow_client(make_subscriber):
    subscriber, _ = make_subscriber(["a"], max_queue_bytes=2 * HUGE, max_queue_frames=3)
    subscriber.send(b"x" * HUGE)  # fills the kernel's buffer: one frame queued
    for _ in range(2):
        subscriber.send(b"y")
    assert not subscriber.closed  # three frames queued: at the bound, not past it

    subscriber.send(b"y")

    assert subscriber.closed and subscriber.close_reason == "slow"


def test_a_client_that_hangs_up_is_noticed_without_a_write(make_subscriber):
    closed = []
    subscriber, peer = make_subscriber(["a"], on_close=closed.append)

    peer.sock.close()

    green_wait(lambda: subscriber.closed, 5, "the read watcher to notice the hang-up")
    assert subscriber.close_reason == "gone"
    assert closed == [subscriber]


def test_finish_sends_the_last_words_then_ends_the_stream(make_subscriber):
    subscriber, peer = make_subscriber(["a"])
    subscriber.live = True
    subscriber.deliver("a", "5-0", "4-0", BODY, frame("5-0"))

    subscriber.finish(sse.token_expired(subscriber.cursor("a"), 99.5))

    peer.until_eof()
    assert peer.events == [
        ParsedEvent("t", '{"n":1}', "5-0"),
        ParsedEvent(sse.TOKEN_EXPIRED_EVENT, '{"expired_at":99.5}', "5-0"),
    ]
