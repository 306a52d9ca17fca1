"""Revocation (shared/revocations.py) on the session's real redis-server: admission refuses the
tokens a revocation covers — signed before it or in its second — with the subject limit's script
or without it, and a broker ends only the revoked subject's streams on the control message,
reading on after it (and after a control message it does not understand). In-process, under
gevent's loop without monkey-patching (tests/unit/inprocess.py)."""

from __future__ import annotations

import json
import secrets
import socket
import time
from unittest.mock import patch

import pytest

import eventgate.shared.tokens as tokens_module
from eventgate.shared import keys, revocations
from eventgate.shared.errors import TokenRevoked
from eventgate.shared.tokens import ChannelTokens
from eventgate.stream.limits import StreamLimits
from eventgate.stream.opening import StreamRequest
from tests.unit.inprocess import Peer, green_wait

WAIT = 5.0


@pytest.mark.parametrize("per_subject", [16, 0], ids=["subject-limit", "no-subject-limit"])
def test_admission_refuses_tokens_signed_until_the_revocation_second(
    make_config, redis_server, per_subject
):
    client = redis_server.client()
    limits = StreamLimits(client, make_config(max_streams_per_subject=per_subject))
    subject = f"user-{secrets.token_hex(4)}"
    second = float(int(revocations.revoke(client, subject, 60)))

    for issued_at in (second - 5, second):  # before it; in the same second (refused on purpose)
        with pytest.raises(TokenRevoked) as refused:
            limits.admit(subject, issued_at)
        assert (refused.value.code, refused.value.status) == ("token_revoked", 401)
    assert limits.open == 0
    for admitted in (limits.admit(subject, second + 1), limits.admit(f"x{subject}", second),
                     limits.admit(None, second)):
        limits.release(admitted)
    assert limits.open == 0
    assert 59 <= client.ttl(keys.revoked_key(subject)) <= 60


def test_the_control_message_ends_only_the_revoked_subjects_streams(
    make_broker, resume, make_subscriber, redis_server, publisher, channel
):
    broker = resume.broker
    broker.start()
    green_wait(lambda: broker.connected, WAIT, "the broker to connect")
    streams = {}
    # Subjects of this test alone: a revocation lives 60 s in the session's Redis, and other
    # tests' tokens for "alice" would be refused meanwhile.
    alice_name, bob_name = f"alice-{secrets.token_hex(4)}", f"bob-{secrets.token_hex(4)}"
    for subject, channels in ((alice_name, [channel, f"{channel}.b"]), (bob_name, [channel])):
        subscriber, peer = make_subscriber(channels, subject=subject)
        resume.open(subscriber, resume.positions(channels, {}), timeout=WAIT)
        streams[subject] = (subscriber, peer)
    (alice, alice_peer), (bob, bob_peer) = streams[alice_name], streams[bob_name]
    client = redis_server.client()
    client.publish(keys.CONTROL_CHANNEL, b"\xffnot json")  # ignored; the reader reads on

    revocations.revoke(client, alice_name, 60)

    alice_peer.until_eof()
    [last] = alice_peer.events[-1:]
    assert last.type == "eventgate.revoked"
    assert json.loads(last.data) == {"subject": alice_name}
    assert alice.closed and not bob.closed
    event_id = publisher.publish(channel, {"n": 1}, "t")
    assert bob_peer.until(1)[0].last_event_id == event_id


def test_a_stream_opening_as_the_revocation_came_is_ended_too(state, secret_keys, channel):
    # The race: admission read Redis before the revocation was stored, and its control message
    # came before the hub knew of the stream. The worker remembers the message.
    green_wait(lambda: state.broker.connected, WAIT, "the broker to connect")
    tokens = ChannelTokens(secret_keys)
    subject = f"user-{secrets.token_hex(4)}"
    old_token, _ = tokens.issue([channel], subject)
    revoked_at = float(int(time.time()))
    state.broker.on_control(revocations.control_message(subject, revoked_at).encode())
    assert not redis_key_exists(state, subject)  # only the message: admission lets it through

    peer = open_stream(state, old_token)
    assert peer.until_eof().startswith(b"HTTP/1.1 200 OK\r\n")
    assert (peer.events[-1].type, peer.events[-1].data) == (
        "eventgate.revoked", json.dumps({"subject": subject}, separators=(",", ":"))
    )
    assert state.limits.open == 0

    later = ChannelTokens(secret_keys)
    with patch.object(tokens_module.time, "time", return_value=revoked_at + 1):
        new_token, _ = later.issue([channel], subject)
    fresh = open_stream(state, new_token)
    assert fresh.read().startswith(b"HTTP/1.1 200 OK\r\n")
    assert any(s.subject == subject for s in state.hub.subscribers)


def redis_key_exists(state, subject: str) -> bool:
    return bool(state.redis.exists(keys.revoked_key(subject)))


def open_stream(state, token: str) -> Peer:
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    state.opener.open(StreamRequest(token, [], None, None), lambda: ours)
    return Peer(theirs)
