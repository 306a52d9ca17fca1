"""The demo page (eventgate.js, Chromium's own EventSource) against a stream pool whose every
worker is full, through the deployed stack's nginx: the page is answered nginx's retry fallback,
never a 503, its EventSource comes back by itself, and it gets in once a stream closes."""

from __future__ import annotations

import pytest

from eventgate.shared.tokens import ChannelTokens
from tests.browser.demo import publish_demo, shown
from tests.clients import StreamClient, stream_path
from tests.servers import wait_for

pytestmark = pytest.mark.stack(
    stream_workers=1,
    settings={"EVENTGATE_MAX_STREAMS_PER_WORKER": "1", "EVENTGATE_RETRY_MS": "400",
              "EVENTGATE_HEARTBEAT": "1"},
)


def test_a_page_waits_out_a_full_pool_and_gets_in(stack, browser):
    token = ChannelTokens(stack.config.secret_keys).issue(["elsewhere"])[0]
    held = StreamClient(stack.port, stream_path(token)).start().wait_open()  # the only room
    page = browser.new_page()
    answers: list[int] = []  # the status of each of the page's stream requests
    page.on("response", lambda r: answers.append(r.status) if "/streams?" in r.url else None)
    try:
        page.goto(stack.url("/"))
        # (Playwright delivers the page's events only inside its own calls: hence the wait.)
        wait_for(lambda: page.wait_for_timeout(50) or len(answers) >= 2, 15,
                 "the page's EventSource to come back once")
        # nginx's fallback each time (a 503 would end the EventSource: eventgate.js would have
        # to start another one itself, with a fresh token; the tokens are counted below).
        assert set(answers) == {200}, answers
        held.close()
        publish_demo(stack, "after the wait")  # after the page's cursor: it is replayed
        wait_for(lambda: shown(page) == ["after the wait"], 15, "the message on the page")
        assert set(answers) == {200}, answers
        # One token: the browser's own EventSource did every retry.
        assert stack.log("nginx-access").count('"POST /demo/token ') == 1
    finally:
        page.close()
        held.close()
