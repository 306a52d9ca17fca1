"""An open's first Redis round trip (stream/limits.py's admission) carries the log heads it
starts at (stream/resume.py's Start, the admission's rider), with the subject limit's script or
without it: one round trip where there were two, the same answers — refusals, positions,
Unavailable when Redis is gone, a script Redis forgot. On the session's real redis-server."""

from __future__ import annotations

import secrets

import pytest
import redis

from eventgate.shared import keys, revocations
from eventgate.shared.errors import TokenRevoked
from eventgate.shared.events import read_heads
from eventgate.stream.limits import StreamLimits
from eventgate.stream.resume import Resume, Unavailable
from tests.servers import LOOPBACK, free_port

PER_SUBJECT = pytest.mark.parametrize("per_subject", [16, 0], ids=["subject-limit", "no-limit"])


def round_trips(monkeypatch, client: redis.Redis) -> list[int]:
    """A one-item list counting ``client``'s connection checkouts (one per command or
    pipeline sent) from now on."""
    pool = client.connection_pool
    count = [0]
    checkout = pool.get_connection

    def counted(*args, **kwargs):
        count[0] += 1
        return checkout(*args, **kwargs)

    monkeypatch.setattr(pool, "get_connection", counted)
    return count


def channels_of(client, publisher, channel: str) -> list[str]:
    """A channel with events, one never published to, one whose log was emptied."""
    publisher.publish(channel, {"n": 1}, "t")
    emptied = f"{channel}.emptied"
    client.xdel(keys.log_key(emptied), publisher.publish(emptied, {"n": 1}, "t"))
    return [channel, f"{channel}.never", emptied]


@PER_SUBJECT
def test_the_heads_ride_in_the_admissions_round_trip(
    make_config, client, resume, publisher, channel, monkeypatch, per_subject
):
    names = channels_of(client, publisher, channel)
    expected = read_heads(client, names)
    limits = StreamLimits(client, make_config(max_streams_per_subject=per_subject))
    limits.release(limits.admit(f"user-{secrets.token_hex(4)}"))  # Redis has its script now
    count = round_trips(monkeypatch, client)

    start = resume.start(names, {})
    lease = limits.admit(f"user-{secrets.token_hex(4)}", 0.0, names, start.rider())
    assert start.positions() == expected
    assert count[0] == 2  # the admission's, and XINFO for the emptied log (none for the others)
    limits.release(lease)


@PER_SUBJECT
def test_a_revoked_subject_is_refused_with_the_heads_riding(
    make_config, client, resume, channel, per_subject
):
    limits = StreamLimits(client, make_config(max_streams_per_subject=per_subject))
    subject = f"user-{secrets.token_hex(4)}"
    second = float(int(revocations.revoke(client, subject, 60)))
    start = resume.start([channel], {})
    with pytest.raises(TokenRevoked):
        limits.admit(subject, second - 5, [channel], start.rider())
    assert limits.open == 0


def test_a_script_redis_forgot_is_loaded_again(make_config, client, resume, publisher, channel):
    names = channels_of(client, publisher, channel)
    expected = read_heads(client, names)
    limits = StreamLimits(client, make_config(max_streams_per_subject=1))
    client.script_flush()
    subject = f"user-{secrets.token_hex(4)}"

    start = resume.start(names, {})
    lease = limits.admit(subject, 0.0, names, start.rider())
    assert lease.key is not None  # admitted by the script, which holds the subject's one lease
    assert start.positions() == expected
    with pytest.raises(Exception, match="open streams"):
        limits.admit(subject, 0.0, names, resume.start(names, {}).rider())
    limits.release(lease)


def test_redis_gone_admits_unchecked_and_the_start_is_unavailable(make_config, hub, resume):
    dead = redis.Redis(host=LOOPBACK, port=free_port(), socket_connect_timeout=1)
    limits = StreamLimits(dead, make_config(max_streams_per_subject=16))
    start = Resume(hub, resume.broker, dead).start(["orders.1"], {})

    lease = limits.admit("user-1", 0.0, ["orders.1"], start.rider())
    assert lease.key is None  # no lease taken: not checked (stream/limits.py)
    with pytest.raises(Unavailable):
        start.positions()
    limits.release(lease)
