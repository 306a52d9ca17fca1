"""docs/example_app.py, run for real: gunicorn serves it on real Redis, a real stream pool
delivers what it publishes, and a failed request publishes nothing."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

from tests.clients import StreamClient
from tests.servers import wait_for
from tests.stack import http_get


def post(url: str) -> int:
    request = urllib.request.Request(url, data=b"", method="POST")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_example_app_publishes_after_commit_to_a_real_stream(example_app, make_pool, channel):
    order = channel.replace("test.", "")
    status, _, body = http_get(f"{example_app}/orders/{order}/stream-token")
    assert status == 200, body
    pool = make_pool()
    client = StreamClient(pool.port, json.loads(body)["url"]).start()
    assert client.status == 200
    wait_for(lambda: pool.health()["streams"] == 1, 5, "the stream to open")

    assert post(f"{example_app}/orders/{order}/pay?card=declined") == 409
    assert post(f"{example_app}/orders/{order}/pay") == 200
    client.wait_events(1)
    time.sleep(0.3)  # on purpose: had the declined request published, its event came first
    assert [(e.type, json.loads(e.data)) for e in client.events] == [
        ("order.updated", {"status": "paid"})]
    client.close()
