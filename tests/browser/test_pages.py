"""The pages in a real browser, through the deployed stack (nginx, both pools, Redis): the demo
shows what the API publishes; after the stream worker is killed (kill -9) the page's own
EventSource reconnects and shows every event published meanwhile, once each (also when it had
seen none yet); the status page's counters move."""

from __future__ import annotations

import os
import signal
import time

import pytest

from tests.browser.demo import (
    kill_stream_worker_while_publishing,
    publish_all,
    publish_demo,
    shown,
    stream_worker_pid,
)
from tests.servers import wait_for

pytestmark = pytest.mark.stack(
    stream_workers=1,
    settings={"EVENTGATE_RETRY_MS": "400", "EVENTGATE_HEARTBEAT": "2",
              "EVENTGATE_STATUS_INTERVAL": "0.5"},
)


def number(page, selector: str) -> float:
    text = page.text_content(selector) or ""
    try:
        return float(text)
    except ValueError:
        return float("nan")


def wait_until(check, what: str, timeout: float = 15.0) -> None:
    """Poll from Python: the pages' CSP forbids the eval that page.wait_for_function uses."""
    wait_for(check, timeout, what)


def test_demo_page_shows_a_message_published_through_the_api(stack, browser):
    page = browser.new_page()
    page.goto(stack.url("/"))
    page.wait_for_selector("#status[data-state=live]")
    publish_demo(stack, "hello from the API")
    wait_until(lambda: len(shown(page)) >= 1, "the message on the page")
    assert shown(page) == ["hello from the API"]
    page.close()


def test_page_resumes_after_the_stream_worker_is_killed(stack, browser):
    page = browser.new_page()
    page.goto(stack.url("/"))
    page.wait_for_selector("#status[data-state=live]")
    before = [f"before {n}" for n in range(5)]
    for text in before:
        publish_demo(stack, text)
    wait_until(lambda: len(shown(page)) >= 5, "5 messages on the page")
    meanwhile = kill_stream_worker_while_publishing(stack, [f"meanwhile {n}" for n in range(20)])
    after = publish_all(stack, [f"after {n}" for n in range(3)])
    expected = before + meanwhile + after
    wait_until(lambda: len(shown(page)) >= len(expected), "every message", timeout=30)
    time.sleep(0.5)  # on purpose: a duplicate would arrive right behind
    assert shown(page) == expected  # every event, in order, each once
    assert page.get_attribute("#status", "data-state") == "live"
    page.close()


def test_page_that_saw_no_event_yet_resumes_after_the_stream_worker_is_killed(stack, browser):
    # The page's EventSource has seen no event, only the stream's opening frame (an id: with no
    # data). Chromium keeps that id and sends it as Last-Event-ID when it reconnects by itself,
    # so what was published before the reconnect is replayed, not skipped.
    page = browser.new_page()
    page.goto(stack.url("/"))
    page.wait_for_selector("#status[data-state=live]")
    assert shown(page) == []
    victim = stream_worker_pid(stack)
    os.kill(victim, signal.SIGKILL)
    meanwhile = [f"unseen {n}" for n in range(10)]
    for text in meanwhile:  # well within the reconnect delay (retry 400 ms, jittered to >= 200)
        publish_demo(stack, text)
    wait_until(lambda: len(shown(page)) >= len(meanwhile), "every message", timeout=30)
    time.sleep(0.5)  # on purpose: a duplicate would arrive right behind
    assert shown(page) == meanwhile
    page.close()


def test_status_page_counters_move(stack, browser):
    page = browser.new_page()
    errors: list = []
    page.on("pageerror", lambda error: errors.append(error))
    page.goto(stack.url("/status"))
    page.wait_for_selector("#status[data-state=live]")
    wait_until(lambda: number(page, "#updates") >= 2, "two status events")
    first = number(page, "#delivered")
    # This page's own stream at least — once a worker record written after it opened reached a
    # status event (records and events are out of step: the first updates may predate it).
    wait_until(lambda: number(page, "#streams") >= 1, "this page's stream in the counts")
    assert number(page, "#workers") == 1
    for n in range(5):
        publish_demo(stack, f"for the counters {n}")
    demo = browser.new_page()  # a second stream, and someone to deliver the demo events to
    demo.goto(stack.url("/"))
    demo.wait_for_selector("#status[data-state=live]")
    publish_demo(stack, "one more")
    wait_until(lambda: number(page, "#delivered") > first, "the delivered counter to move")
    wait_until(lambda: number(page, "#streams") >= 2, "two open streams")
    points = page.get_attribute("#streams-line", "points")
    assert points and len(points.split()) >= 2  # the chart is drawn
    assert len(page.query_selector_all("#worker-table tbody tr")) == 1
    assert not errors
    demo.close()
    page.close()
