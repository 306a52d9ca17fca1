"""StreamState (stream/state.py) in-process on a real redis-server: built whole, started, a
stream opened through its front-door opener on a socketpair, and shut down the way the gunicorn
hook does it. Under gevent's loop without monkey-patching (tests/unit/inprocess.py)."""

from __future__ import annotations

import socket

from eventgate.shared import keys
from eventgate.shared.tokens import ChannelTokens
from eventgate.stream.opening import StreamRequest
from eventgate.stream.state import StreamState
from tests.unit.inprocess import Peer, green_wait


def open_stream(state: StreamState, token: str) -> Peer:
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    state.opener.open(StreamRequest(token, [], None, None), lambda: ours)
    return Peer(theirs)


def test_a_started_state_serves_a_stream_and_shutdown_ends_it_with_a_jittered_retry(
    state, secret_keys, publisher, channel, redis_server
):
    green_wait(lambda: state.broker.connected, 5, "the broker to connect")
    token, _ = ChannelTokens(secret_keys).issue([channel], "alice")
    peer = open_stream(state, token)
    assert peer.read().startswith(b"HTTP/1.1 200 OK\r\n")
    publisher.publish(channel, {"n": 1}, "t")
    [event] = peer.until(1)
    assert event.data == '{"n":1}'
    assert redis_server.client().zcard(keys.subject_streams_key("alice")) == 1

    state.shutdown(graceful_timeout=0)

    # Before the loop runs again (as when the worker exits right after): leases given back.
    assert redis_server.client().zcard(keys.subject_streams_key("alice")) == 0
    tail = peer.until_eof().rsplit(b"\n\n", 3)[-3:]
    assert tail[1] == b": shutdown" and tail[2] == b""
    retry_ms = int(tail[0].rpartition(b"retry: ")[2])
    assert 0.2 * state.config.retry_ms <= retry_ms <= 2.0 * state.config.retry_ms
    assert state.hub.subscribers == set() and state.limits.open == 0
    assert not state.broker.connected
