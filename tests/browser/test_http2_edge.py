"""HTTP/2 with TLS at the edge, proven end to end: deploy/production/'s nginx, rendered for
loopback with a certificate from the test's own CA, in front of a real stack (web pool, stream
pool, Redis). curl, trusting only that CA, gets a stream over HTTP/2; Chromium opens ten tabs of
the demo page on one origin, each with its own EventSource, and all ten are live and get every
event — where over HTTP/1.1 six connections per origin leave some hanging (test_tabs.py)."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from tests.browser.demo import publish_demo, shown
from tests.browser.tabs import TABS, open_tabs, wait_all_live
from tests.ops.production import curl_http2
from tests.servers import wait_for

pytestmark = pytest.mark.stack(
    stream_workers=1,
    settings={"EVENTGATE_RETRY_MS": "400", "EVENTGATE_HEARTBEAT": "1"},
)

#: A token this short ends its stream on its own (eventgate.token_expired, then the end), so
#: curl exits by itself and writes out what it measured.
CURL_TOKEN_SECONDS = 3
CURL_CHANNEL = "edge.curl"


def stream_token(stack, channel: str, ttl: int) -> str:
    code, _, body = stack.post("/api/tokens", {"channels": [channel], "ttl": ttl})
    assert code == 201, body
    return json.loads(body)["token"]


def publish(stack, channel: str, data: dict) -> None:
    code, _, body = stack.post("/api/events", {"channel": channel, "type": "edge.test",
                                               "data": data})
    assert code == 201, body


def read_until(lines, marker: str, seen: list[str]) -> bool:
    """Append curl's output lines to ``seen`` until one holds ``marker``; False at its end."""
    for line in lines:
        seen.append(line)
        if marker in line:
            return True
    return False


def test_curl_trusting_the_test_ca_gets_a_stream_over_http2(stack, stack_edge, test_ca):
    token = stream_token(stack, CURL_CHANNEL, CURL_TOKEN_SECONDS)
    # No -k: the edge's certificate must verify against the test CA, for the name 127.0.0.1.
    curl = subprocess.Popen(
        [curl_http2(), "--http2", "--cacert", str(test_ca.ca_certificate), "-sSN", "-D", "-",
         "--max-time", "15", "-w", "\nhttp_version=%{http_version}\n",
         stack_edge.url(f"/streams?token={token}&channel={CURL_CHANNEL}")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    seen: list[str] = []
    try:
        assert read_until(curl.stdout, "retry:", seen), seen  # the opening frame
        publish(stack, CURL_CHANNEL, {"n": 1})
        assert read_until(curl.stdout, '"n":1', seen), seen
        seen.extend(curl.stdout)  # the token expires: the stream ends, curl writes out
        assert curl.wait(timeout=15) == 0, curl.stderr.read()
    finally:
        if curl.poll() is None:
            curl.kill()
            curl.wait()
    output = "".join(seen)
    assert output.startswith("HTTP/2 200"), output
    assert "content-type: text/event-stream" in output.lower()
    assert "\nid: " in output and "event: eventgate.token_expired" in output, output
    assert output.rstrip().endswith("http_version=2"), output


def test_ten_tabs_each_with_its_own_eventsource_are_all_live_over_http2(
        stack, stack_edge, tls_browser):
    streams: list[dict] = []  # each tab's /streams response, as Chromium's network saw it

    def watch(page) -> None:
        session = tls_browser.new_cdp_session(page)
        session.on("Network.responseReceived", lambda event: streams.append(event["response"])
                   if event["type"] == "EventSource" else None)
        session.send("Network.enable")

    # ?shared=0: no leader tab, every tab opens its own EventSource, as a plain page would.
    with open_tabs(tls_browser, stack_edge.url("/?shared=0"), prepare=watch) as pages:
        wait_all_live(pages)
        protocols = {page.evaluate(
            "() => performance.getEntriesByType('navigation')[0].nextHopProtocol")
            for page in pages}
        assert protocols == {"h2"}, protocols
        wait_for(lambda: len(streams) >= TABS, 10, "every tab's stream response")
        assert [(s["status"], s["protocol"]) for s in streams] == [(200, "h2")] * TABS, streams
        connections = {s["connectionId"] for s in streams}
        print(f"\n[http2 edge] {TABS} streams over {len(connections)} connection(s)")
        assert len(connections) == 1, connections  # every stream multiplexed on one
        text = f"over h2 {time.monotonic_ns()}"
        publish_demo(stack, text)
        wait_for(lambda: all(shown(page) == [text] for page in pages), 10,
                 "the event in every tab")
