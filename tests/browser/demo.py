"""Driving the demo page from a test: publishing to its channel, reading what a tab shows."""

from __future__ import annotations

import json
import os
import signal
import time

from eventgate.web.demo import DEMO_CHANNEL, DEMO_EVENT_TYPE
from tests.servers import wait_for
from tests.stack import http_get


def publish_demo(stack, text: str) -> None:
    body = {"channel": DEMO_CHANNEL, "type": DEMO_EVENT_TYPE,
            "data": {"text": text, "at": "2026-01-01T00:00:00Z"}}
    status, _, answer = stack.post("/api/events", body)
    assert status == 201, answer


def shown(page) -> list[str]:
    """The demo page's messages, without their time."""
    return page.eval_on_selector_all(
        "#messages li", "items => items.map(li => li.lastChild.textContent)")


def stream_worker_pid(stack) -> int:
    status, _, body = http_get(stack.url("/streams/healthz"))
    assert status == 200, body
    return json.loads(body)["pid"]


def publish_all(stack, texts: list[str], pause: float = 0.0) -> list[str]:
    """Publish ``texts`` in order, ``pause`` seconds apart (on purpose: to spread them over a
    fault); returns them, the messages a tab should then show."""
    for text in texts:
        publish_demo(stack, text)
        if pause:
            time.sleep(pause)
    return texts


def kill_stream_worker_while_publishing(stack, texts: list[str]) -> list[str]:
    """kill -9 the stream worker, publish ``texts`` spread over its death, respawn and the
    clients' reconnect, and return once a new worker answers."""
    victim = stream_worker_pid(stack)
    os.kill(victim, signal.SIGKILL)
    publish_all(stack, texts, pause=0.05)
    wait_for(lambda: stream_worker_pid(stack) != victim, 20, "a new stream worker")
    return texts
