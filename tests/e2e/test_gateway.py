"""End to end through the deployed stack: nginx + web (gthread gunicorn) + stream (gevent gunicorn)
+ redis, all started by supervisord from the deploy templates. Clients are sseclient-py (the
declared client) and raw sockets read by the strict parser."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from urllib.parse import quote

import pytest
import sseclient

from eventgate.shared.tokens import ChannelTokens
from tests.clients import StreamClient, stream_path
from tests.servers import wait_for
from tests.stack import http_get

pytestmark = pytest.mark.stack(stream_workers=1, settings={"EVENTGATE_HEARTBEAT": "1"})


def api(stack, path: str, body, key: str | bool | None = None) -> tuple[int, dict]:
    status, _, data = stack.post(path, body, key)
    return status, json.loads(data or b"{}")


def token_for(stack, channels, **extra) -> str:
    status, body = api(stack, "/api/tokens", {"channels": channels, **extra})
    assert status == 201, body
    return body["token"]


class SSEReader:
    """One sseclient-py client in a thread, through nginx."""

    def __init__(self, stack, token: str) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", stack.port, timeout=30)
        self.conn.request("GET", f"/streams?token={quote(token)}")
        self.response = self.conn.getresponse()
        assert self.response.status == 200
        self.events: list = []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        def chunks():
            while True:
                chunk = self.response.read1(65536)
                if not chunk:
                    return
                yield chunk

        try:
            for event in sseclient.SSEClient(chunks()).events():
                self.events.append(event)
        except (OSError, ValueError, AttributeError, http.client.HTTPException):
            pass  # closed by the test

    def close(self) -> None:
        # The response's file object keeps the descriptor alive: shut the connection down.
        if self.conn.sock is not None:
            self.conn.sock.shutdown(socket.SHUT_RDWR)
        self.conn.close()
        self.response.close()


def test_fifty_clients_get_a_hundred_events_in_order_with_ids(stack, channel):
    token = token_for(stack, [channel])
    readers = [SSEReader(stack, token) for _ in range(50)]
    wait_for(lambda: stack_streams(stack) >= 50, 10, "50 open streams")
    ids = []
    for n in range(100):
        status, body = api(stack, "/api/events", {"channel": channel, "type": "tick",
                                                  "data": {"n": n}})
        assert status == 201, body
        ids.append(body["id"])
    for reader in readers:
        wait_for(lambda r=reader: len(r.events) >= 100, 20, "100 events on every client")
        assert [json.loads(e.data)["n"] for e in reader.events] == list(range(100))
        assert [e.id for e in reader.events] == ids
        assert {e.event for e in reader.events} == {"tick"}
        reader.close()


def test_batch_publish_arrives_in_order(stack, channel):
    token = token_for(stack, [channel])
    client = StreamClient(stack.port, stream_path(token)).start()
    wait_for(lambda: stack_streams(stack) >= 1, 10, "the stream")
    status, body = api(stack, "/api/events",
                       [{"channel": channel, "data": {"n": n}} for n in range(20)])
    assert status == 201 and len(body["ids"]) == 20
    events = client.wait_events(20)
    assert [json.loads(e.data)["n"] for e in events] == list(range(20))
    assert [e.last_event_id for e in events] == body["ids"]
    client.close()


def test_150_clients_on_one_worker_share_one_pubsub_connection(stack, channel):
    token = token_for(stack, [channel])
    clients = [StreamClient(stack.port, stream_path(token)).start() for _ in range(150)]
    wait_for(lambda: stack_streams(stack) >= 150, 15, "150 open streams")
    pid = stack_health(stack)["pid"]
    pubsubs = [c for c in stack.redis().client_list(_type="pubsub")
               if c.get("name") == f"eventgate-stream-{pid}"]
    assert len(pubsubs) == 1
    status, _ = api(stack, "/api/events", {"channel": channel, "data": "all of you"})
    assert status == 201
    for client in clients:
        assert client.wait_events(1)[0].data == '"all of you"'
    for client in clients:
        client.close()
    wait_for(lambda: stack_health(stack)["streams"] == 0, 10, "stream count back to zero")
    assert stack_health(stack)["channels"] == 0
    from eventgate.shared.keys import live_channel

    wait_for(lambda: not dict(stack.redis().pubsub_numsub(live_channel(channel)))[
        live_channel(channel).encode()], 5, "the subscription to be gone")


@pytest.mark.parametrize("kind", ["missing", "tampered", "expired", "other_channel", "bad_name"])
def test_refusals_through_nginx(stack, channel, kind, monkeypatch):
    token = token_for(stack, [channel])
    paths = {
        "missing": "/streams",
        "tampered": stream_path(token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")),
        "other_channel": stream_path(token, ("someone.else",)),
        "bad_name": stream_path(token, ("bad\rname",)),
    }
    if kind == "expired":
        import eventgate.shared.tokens as token_module

        real = time.time
        monkeypatch.setattr(token_module.time, "time", lambda: real() - 7200)
        old, _ = ChannelTokens(stack.config.secret_keys).issue([channel], ttl=60)
        monkeypatch.undo()
        paths["expired"] = stream_path(old)
    expected = {"missing": (401, "invalid_token"), "tampered": (401, "invalid_token"),
                "expired": (401, "token_expired"), "other_channel": (403, "channel_forbidden"),
                "bad_name": (400, "invalid_name")}[kind]
    status, headers, body = http_get(stack.url(paths[kind]))
    assert status == expected[0]
    payload = json.loads(body)
    assert payload["error"] == expected[1] and payload["message"]


def test_heartbeat_on_idle_stream_through_nginx(stack, channel):
    token = token_for(stack, [channel])
    client = StreamClient(stack.port, stream_path(token)).start()
    wait_for(lambda: client.raw.count(b": hb\n\n") >= 2, 2.5, "two heartbeats (every 1 s)")
    client.close()


def stack_health(stack) -> dict:
    status, _, body = http_get(stack.url("/streams/healthz"))
    assert status == 200
    return json.loads(body)


def stack_streams(stack) -> int:
    return stack_health(stack)["streams"]


def test_history_through_nginx_is_json_both_ways(stack, channel):
    # /streams/history has its own nginx location: its answers (a page, a refusal) stay JSON,
    # never the streams' retry fallback.
    ids = api(stack, "/api/events", [{"channel": channel, "data": n} for n in range(3)])[1]["ids"]
    token = token_for(stack, [channel])

    status, headers, body = http_get(
        stack.url(f"/streams/history?token={token}&channel={channel}&limit=2"))
    refused, refused_headers, refusal = http_get(stack.url(f"/streams/history?channel={channel}"))

    assert status == 200 and [e["id"] for e in json.loads(body)["events"]] == ids[:2]
    assert 'rel="next"' in headers["Link"]
    assert refused == 401 and refused_headers["Content-Type"].startswith("application/json")
    assert json.loads(refusal)["error"]
