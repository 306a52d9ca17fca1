"""Resume with Last-Event-ID (real gevent pool + real Redis): exact, in order, once."""

from __future__ import annotations

import json
import time

from eventgate.shared.config import Config
from eventgate.shared.publisher import Publisher
from eventgate.shared.redisconn import connect
from tests.clients import EventSourceClient, StreamClient, stream_path
from tests.servers import wait_for
from tests.stream.paced import PacedPublisher


def numbers(events, event_type="message"):
    return [json.loads(e.data)["n"] for e in events if e.type == event_type]


def test_reconnect_after_1000_missed_events(make_pool, tokens, publisher, channel):
    pool = make_pool()
    token, _ = tokens.issue([channel])
    first = StreamClient(pool.port, stream_path(token)).start().wait_open()
    publisher.publish(channel, {"n": 0})
    cursor = first.wait_events(1)[0].last_event_id
    first.close()
    publisher.publish_many([publisher.draft(channel, {"n": n}) for n in range(1, 1001)])
    again = StreamClient(pool.port, stream_path(token), {"Last-Event-ID": cursor}).start()
    again.wait_events(1000)
    publisher.publish(channel, {"n": 1001})
    again.wait_events(1001)
    assert numbers(again.events) == list(range(1, 1002))
    again.close()


def test_query_cursor_and_header_precedence(make_pool, tokens, publisher, channel):
    pool = make_pool()
    token, _ = tokens.issue([channel])
    ids = [publisher.publish(channel, {"n": n}) for n in range(5)]
    by_query = StreamClient(pool.port, stream_path(token, (), ids[1], query_cursor=True)).start()
    assert numbers(by_query.wait_events(3)) == [2, 3, 4]
    path = stream_path(token, (), ids[0], query_cursor=True)
    both = StreamClient(pool.port, path, {"Last-Event-ID": ids[3]}).start()
    assert numbers(both.wait_events(1)) == [4]
    time.sleep(0.3)  # on purpose: nothing more may arrive (the older query cursor is ignored)
    assert len(both.events) == 1
    by_query.close()
    both.close()


def test_resume_across_five_channels_on_one_connection(make_pool, tokens, publisher):
    pool = make_pool()
    names = [f"multi.{time.monotonic_ns()}.{i}" for i in range(5)]
    token, _ = tokens.issue(names)
    client = StreamClient(pool.port, stream_path(token)).start().wait_open()
    publisher.publish_many([publisher.draft(names[n % 5], {"n": n}) for n in range(50)])
    client.wait_events(50)
    # Resume from the middle of what this connection received. Events published while it was
    # still replaying come channel by channel, so the 20th received need not be n=19: what
    # counts as missed is what came after it, on each channel.
    middle = client.events[19]
    cursor = middle.last_event_id
    own = names[json.loads(middle.data)["n"] % 5]
    assert cursor.split(",")[0].split("=")[0] == own  # its own channel first
    received_after = numbers(client.events[20:])
    client.close()
    publisher.publish_many([publisher.draft(names[n % 5], {"n": n}) for n in range(50, 100)])
    again = StreamClient(pool.port, stream_path(token), {"Last-Event-ID": cursor}).start()
    again.wait_events(80)
    # Exactly the missed events, in order on each channel (replay goes channel by channel).
    for index, name in enumerate(names):
        on_channel = [e for e in again.events if e.last_event_id.startswith(f"{name}=")]
        missed = [n for n in [*received_after, *range(50, 100)] if n % 5 == index]
        assert numbers(on_channel) == missed
    assert len(again.events) == 80
    # every event's cursor names its own channel first
    for event in again.events:
        channel = event.last_event_id.split(",")[0].split("=")[0]
        assert channel == names[json.loads(event.data)["n"] % 5]
    again.close()


def test_cursor_naming_other_channels_is_ignored(make_pool, tokens, publisher, channel):
    pool = make_pool()
    token, _ = tokens.issue([channel, f"{channel}.b"])
    publisher.publish(channel, {"n": 0})
    cursor = f"secret.channel=0-0,{channel}=0-0"
    client = StreamClient(pool.port, stream_path(token), {"Last-Event-ID": cursor}).start()
    assert numbers(client.wait_events(1)) == [0]
    time.sleep(0.3)  # on purpose: an id naming the secret channel would arrive within this
    assert all(e.last_event_id.count("secret") == 0 for e in client.events)
    client.close()


def test_history_exhausted_sends_lost_event_first(make_pool, make_config, tokens, channel):
    pool = make_pool()
    config: Config = make_config(retention_count=100)
    publisher = Publisher(connect(config), config)
    token, _ = tokens.issue([channel])
    seen = publisher.publish(channel, {"n": 0})
    publisher.publish_many([publisher.draft(channel, {"n": n}) for n in range(1, 501)])
    client = StreamClient(pool.port, stream_path(token), {"Last-Event-ID": seen}).start()
    client.wait_events(2)
    wait_for(lambda: numbers(client.events)[-1:] == [500], 10, "the replay up to the newest")
    events = client.events
    assert events[0].type == "eventgate.lost"
    lost = json.loads(events[0].data)
    assert lost["channel"] == channel and lost["last_seen"] == seen
    rest = numbers(events[1:])
    assert rest == list(range(rest[0], 501)) and rest[0] > 1  # contiguous after the notice
    assert events[0].last_event_id == lost["resumes_after"]
    client.close()


def test_replay_to_live_handoff_at_500_per_second(make_pool, tokens, publisher, channel):
    pool = make_pool()
    token, _ = tokens.issue([channel])
    clients = [EventSourceClient(pool.port, token).start() for _ in range(3)]
    wait_for(lambda: all(c.opened for c in clients), 10, "every client's stream to open")
    paced = PacedPublisher(publisher, [channel], total=1500, rate=500).start()
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:  # cut every client every 0.3 s: it must resume exactly
        time.sleep(0.3)  # on purpose: the interval between cuts
        for client in clients:
            if client.current is not None:
                client.current.close(reset=True)
    paced.wait()
    for client in clients:
        got = client.wait_data(list(range(1500)), timeout=20)
        assert [d["n"] for d in got] == list(range(1500)), client.connections
        assert client.connections >= 5
        client.stop()
