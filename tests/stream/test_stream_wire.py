"""The stream tier alone (real gunicorn gevent pool + real Redis): wire format, refusals,
one pub/sub subscription per channel per process, cleanup, heartbeats."""

from __future__ import annotations

import json
import time

from tests.clients import StreamClient, stream_path
from tests.servers import wait_for


def numsub(redis_server, channel: str) -> int:
    from eventgate.shared.keys import live_channel

    return dict(redis_server.client().pubsub_numsub(live_channel(channel)))[
        live_channel(channel).encode()
    ]


def pubsub_connections(redis_server, pid: int) -> int:
    clients = redis_server.client().client_list(_type="pubsub")
    return sum(1 for c in clients if c.get("name") == f"eventgate-stream-{pid}")


def test_stream_head_and_event_bytes(make_pool, tokens, publisher, channel):
    pool = make_pool()
    token, _ = tokens.issue([channel])
    client = StreamClient(pool.port, stream_path(token)).start()
    wait_for(lambda: numsub_ok(pool), 5, "the stream to register")
    event_id = publisher.publish(channel, {"n": 1, "s": "é\r\n"})
    client.wait_events(1)
    head = client.head_raw.decode()
    assert head.startswith("HTTP/1.1 200 OK\r\n")
    assert head.count("HTTP/1.1") == 1
    assert "content-type: text/event-stream; charset=utf-8" in head.lower()
    assert "cache-control: no-cache" in head.lower()
    assert "x-accel-buffering: no" in head.lower()
    assert "transfer-encoding" not in head.lower()
    body = client.raw.partition(b"\r\n\r\n")[2]
    assert body.startswith(b"retry: ")
    expected = (f"id: {event_id}\nevent: message\n" + 'data: {"n":1,"s":"é\\r\\n"}\n\n').encode()
    assert expected in body
    assert client.events[0].last_event_id == event_id
    assert json.loads(client.events[0].data) == {"n": 1, "s": "é\r\n"}
    client.close()


def numsub_ok(pool) -> bool:
    return pool.health()["streams"] >= 1


def test_refusals_are_json_with_real_statuses(make_pool, tokens, channel, secret_keys):
    pool = make_pool()
    good, _ = tokens.issue([channel, "orders.*"])

    def get(path: str, headers: dict | None = None) -> StreamClient:
        return StreamClient(pool.port, path, headers).start()  # a refusal: read to its end

    cases = [
        ("/streams", 401, "invalid_token"),
        ("/streams?token=garbage", 401, "invalid_token"),
        (stream_path(good[:-3] + ("AAA" if good[-3:] != "AAA" else "BBB")), 401, "invalid_token"),
        (stream_path(good, ("other.channel",)), 403, "channel_forbidden"),
        (stream_path(good, ("bad channel",)), 400, "invalid_name"),
        (stream_path(good, (channel,)) + "&lastEventId=nonsense", 400, "invalid_cursor"),
    ]
    for path, status, code in cases:
        client = get(path)
        assert client.status == status, path
        assert client.response_headers["content-type"] == "application/json"
        assert client.json()["error"] == code
        assert client.json()["message"]
    only_prefix, _ = tokens.issue(["orders.*"])
    assert get(stream_path(only_prefix)).status == 403
    opened = get(stream_path(only_prefix, ("orders.7",)))
    assert opened.status == 200
    opened.close()


def test_expired_token_is_401_token_expired(make_pool, tokens, channel, monkeypatch):
    pool = make_pool()
    import eventgate.shared.tokens as token_module

    real_time = time.time
    monkeypatch.setattr(token_module.time, "time", lambda: real_time() - 3600)
    old, _ = tokens.issue([channel], ttl=60)
    monkeypatch.undo()
    client = StreamClient(pool.port, stream_path(old)).start()
    client.ended.wait(5)
    assert client.status == 401
    assert client.json()["error"] == "token_expired"


def test_one_pubsub_subscription_per_channel_and_cleanup(
    make_pool, tokens, publisher, channel, redis_server
):
    pool = make_pool()
    [worker] = pool.worker_pids()
    token, _ = tokens.issue([channel])
    clients = [StreamClient(pool.port, stream_path(token)).start() for _ in range(40)]
    wait_for(lambda: pool.health()["streams"] == 40, 10, "40 streams")
    assert numsub(redis_server, channel) == 1
    assert pubsub_connections(redis_server, worker) == 1
    publisher.publish(channel, "hello")
    for client in clients:
        assert client.wait_events(1)[0].data == '"hello"'
    for index, client in enumerate(clients):
        client.close(reset=index % 2 == 0)  # half hang up with RST, half with FIN
    wait_for(lambda: pool.health()["streams"] == 0, 5, "every stream to be cleaned up")
    assert pool.health()["channels"] == 0
    wait_for(lambda: numsub(redis_server, channel) == 0, 5, "the channel to be unsubscribed")
    assert pubsub_connections(redis_server, worker) == 1


def test_heartbeat_on_idle_stream(make_pool, tokens, channel):
    pool = make_pool(heartbeat="0.5")
    token, _ = tokens.issue([channel])
    client = StreamClient(pool.port, stream_path(token)).start()
    wait_for(lambda: client.raw.count(b": hb\n\n") >= 3, 2.2, "three heartbeats (every 0.5 s)")
    assert client.events == []
    client.close()


def test_opening_frame_carries_the_start_cursor(make_pool, tokens, publisher, channel):
    # The frame after retry: is an id: with no data. It dispatches nothing, yet a WHATWG parser
    # (EventSource) takes it as the last event ID: a stream cut before its first event resumes
    # from here (tests/stream/test_faults.py shows the resume).
    pool = make_pool()
    other = f"{channel}.b"
    newest = publisher.publish(channel, {"n": 0})
    token, _ = tokens.issue([channel, other])
    one = StreamClient(pool.port, stream_path(token, (channel,))).start()
    two = StreamClient(pool.port, stream_path(token, (channel, other), f"{other}=0-0")).start()
    wait_for(lambda: b"\n\nid: " in one.raw and b"\n\nid: " in two.raw, 5, "the opening frames")
    for client, cursor in ((one, newest), (two, f"{channel}={newest},{other}=0-0")):
        body = client.raw.partition(b"\r\n\r\n")[2]
        retry, opening = body.split(b"\n\n")[:2]
        assert retry.startswith(b"retry: ")
        assert opening == f"id: {cursor}".encode()
        assert client.events == []  # nothing dispatched
        assert client.parser.last_event_id == cursor
        client.close()
