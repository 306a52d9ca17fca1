"""``GET /streams?rewind=N`` on a real pool: a stream without a cursor starts with the last N
retained events of each channel, then goes on live with no gap and no duplicate, through either
front door."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest

from eventgate.shared import keys
from tests.clients import StreamClient, request, stream_path
from tests.stream.paced import PacedPublisher

#: A header the accept fast path declines (gunicorn drops it): the request takes the Flask door.
FLASK_DOOR = {"X_Via_Flask": "1"}
DOORS = pytest.mark.parametrize("door", [{}, FLASK_DOOR], ids=["fast", "flask"])


def _log_ids(client, channel: str) -> list[str]:
    return [entry_id.decode() for entry_id, _ in client.xrange(keys.log_key(channel))]


def _on(events, channel: str) -> list[str]:
    """The ids of ``events`` on ``channel`` (a multi-channel cursor names its own one first)."""
    return [e.last_event_id.split(",")[0].partition("=")[2] for e in events
            if e.last_event_id.startswith(f"{channel}=")]


@DOORS
def test_rewind_gives_the_last_n_then_live(history_pool, tokens, publisher, redis_server,
                                           channel, door):
    ids = publisher.publish_many([publisher.draft(channel, {"n": n}) for n in range(10)])
    token, _ = tokens.issue([channel])
    client = StreamClient(history_pool.port, stream_path(token) + "&rewind=3", door).start()
    assert client.is_stream, client.body
    # The head went out once the start was fixed; live events now race the replay and the
    # hand-off.
    paced = PacedPublisher(publisher, [channel], total=60, rate=600).start()
    paced.wait()
    events = client.wait_events(63)
    log = _log_ids(redis_server.client(), channel)
    assert [e.last_event_id for e in events] == log[7:]  # exactly once each, in order
    assert [e.last_event_id for e in events[:3]] == ids[7:]
    assert {e.type for e in events} == {"message"}  # no loss notice
    client.close()


def test_rewind_on_two_channels_one_already_followed(history_pool, tokens, publisher,
                                                     redis_server, channel):
    full, trimmed = channel, channel + ".b"
    redis = redis_server.client()
    token, _ = tokens.issue([full, trimmed])
    # The worker follows ``full`` live already: rewind must not start where the hub stands.
    follower = StreamClient(history_pool.port, stream_path(token, (full,))).start().wait_open()
    publisher.publish_many([publisher.draft(full, {"n": n}) for n in range(10)])
    publisher.publish_many([publisher.draft(trimmed, {"n": n}) for n in range(5)])
    # It holds fewer than N events, the older ones trimmed.
    redis.xtrim(keys.log_key(trimmed), maxlen=2, approximate=False)
    follower.wait_events(10)
    client = StreamClient(history_pool.port, stream_path(token, (full, trimmed)) + "&rewind=3")
    client.start()
    paced = PacedPublisher(publisher, [full, trimmed], total=40, rate=400).start()
    paced.wait()
    client.wait_events(3 + 2 + 40)
    assert _on(client.events, full) == _log_ids(redis, full)[7:]
    assert _on(client.events, trimmed) == _log_ids(redis, trimmed)
    assert len(client.events) == 45 and {e.type for e in client.events} == {"message"}
    follower.close()
    client.close()


@DOORS
def test_rewind_on_an_empty_channel_gives_only_live_events(history_pool, tokens, publisher,
                                                           channel, door):
    token, _ = tokens.issue([channel])
    client = StreamClient(history_pool.port, stream_path(token) + "&rewind=5", door).start()
    client.wait_open()
    live = [publisher.publish(channel, {"n": n}) for n in range(3)]
    assert [e.last_event_id for e in client.wait_events(3)] == live
    client.close()


@DOORS
def test_rewind_is_ignored_with_a_cursor(history_pool, tokens, publisher, channel, door):
    ids = publisher.publish_many([publisher.draft(channel, {"n": n}) for n in range(10)])
    token, _ = tokens.issue([channel])
    headers = {"Last-Event-ID": ids[8], **door}
    client = StreamClient(history_pool.port, stream_path(token) + "&rewind=5", headers).start()
    client.wait_events(1)
    live = publisher.publish(channel, {"n": 10})
    events = client.wait_events(2)
    assert [e.last_event_id for e in events] == [ids[9], live]
    assert json.loads(events[0].data) == {"n": 9}
    client.close()


@DOORS
@pytest.mark.parametrize("value", ["0", "101", "three", "", "-1", "2.5", "1e2"])
def test_bad_rewind_is_a_400(history_pool, tokens, channel, door, value):
    token, _ = tokens.issue([channel])
    target = f"{stream_path(token)}&rewind={quote(value)}"
    answer = request(history_pool.port, "GET", target, door)
    assert ("server" in answer.headers) == bool(door)  # gunicorn's header: the Flask door
    assert (answer.status, answer.json()["error"]) == (400, "invalid_request")
    assert "rewind" in answer.json()["message"]
