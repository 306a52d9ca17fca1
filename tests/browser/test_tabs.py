"""Ten tabs of the demo page on the HTTP/1.1 stack, through eventgate.js: all live on one shared
stream, every tab showing every event once, in order — also when the leader's tab closes, when
the token expires mid-stream, and when the stream worker is killed; a revocation ends it in every
tab. Without the sharing (each tab its own EventSource) the browser's six connections per origin
leave some tabs hanging."""

from __future__ import annotations

import time

import pytest

from eventgate.web.demo import DEMO_CHANNEL
from tests.browser.demo import kill_stream_worker_while_publishing, publish_all, shown
from tests.browser.tabs import TABS, live, open_tabs, status, wait_all_live
from tests.servers import wait_for

pytestmark = pytest.mark.stack(
    stream_workers=1,
    settings={"EVENTGATE_RETRY_MS": "400", "EVENTGATE_HEARTBEAT": "1"},
)


def leader(pages):
    found = [page for page in pages if status(page, "data-leader") == "true"]
    assert len(found) == 1, f"{len(found)} leaders"
    return found[0]


def assert_every_tab_shows(pages, expected: list[str], timeout: float = 20.0) -> None:
    """Every tab shows ``expected``, in order, each once (a repeat would arrive right behind)."""
    wait_for(lambda: all(len(shown(page)) >= len(expected) for page in pages), timeout,
             f"{len(expected)} messages in every tab")
    time.sleep(0.5)  # on purpose: a duplicate would arrive right behind
    for page in pages:
        assert shown(page) == expected


def token_requests(stack) -> int:
    """How many tokens the demo's pages asked for so far (the log holds no query strings)."""
    return stack.log("nginx-access").count('"POST /demo/token ')


def refusals(stack) -> int:
    """How many streams were refused with 401 so far."""
    return stack.log("nginx-access").count('"GET /streams HTTP/1.1" 401')


def test_ten_tabs_share_one_stream_and_a_new_leader_takes_over(stack, browser):
    with open_tabs(browser, stack.url("/")) as pages:
        wait_all_live(pages)
        before = publish_all(stack, [f"event {n}" for n in range(20)])
        assert_every_tab_shows(pages, before)
        old = leader(pages)
        pages.remove(old)
        old.close()
        # while the next tab takes the lock and opens the stream
        meanwhile = publish_all(stack, [f"meanwhile {n}" for n in range(10)])
        wait_for(lambda: sum(status(page, "data-leader") == "true" for page in pages) == 1, 10,
                 "a new leader")
        wait_all_live(pages)
        after = publish_all(stack, [f"after {n}" for n in range(5)])
        assert_every_tab_shows(pages, before + meanwhile + after)


def test_a_new_leader_resumes_from_the_opening_cursor_when_no_event_came_yet(stack, browser):
    # No tab has seen an event id (the opening frame's is not shown to JavaScript): the cursor
    # is the one the first token answer carried, passed on to the other tabs with the state.
    held = []

    def hold(route) -> None:
        held.append(route)

    with open_tabs(browser, stack.url("/"), count=3) as pages:
        wait_all_live(pages)
        assert all(shown(page) == [] for page in pages)
        browser.route("**/demo/token", hold)
        try:
            old = leader(pages)
            pages.remove(old)
            old.close()
            # (a Playwright call lets the route handler run)
            wait_for(lambda: live(pages) is not None and held, 10, "the new leader's token request")
            # published before the new leader's stream can open
            meanwhile = publish_all(stack, [f"before the new stream {n}" for n in range(5)])
            held[0].continue_()
            wait_all_live(pages)
            after = publish_all(stack, ["after the takeover"])
            assert_every_tab_shows(pages, meanwhile + after)
        finally:
            browser.unroute("**/demo/token", hold)


def test_a_token_expiring_mid_stream_is_refreshed_and_nothing_is_lost(stack, browser):
    with open_tabs(browser, stack.url("/?ttl=1"), count=3) as pages:
        wait_all_live(pages)
        first = token_requests(stack)
        # spread over the end of a 1-second token (of two, likely)
        expected = publish_all(stack, [f"through expiry {n}" for n in range(15)], pause=0.2)
        assert_every_tab_shows(pages, expected)
        assert token_requests(stack) - first >= 1  # refreshed, and resumed without a gap


def test_tabs_resume_after_the_stream_worker_is_killed(stack, browser):
    # 1-second tokens: the browser's own reconnect, once a new worker answers, is often refused
    # with 401 (EventSource then gives up for good) and the script comes back with a fresh
    # token; when the new worker answers fast enough, the browser's reconnect is enough. Either
    # way nothing may be lost (whether the 401 path ran depends on the respawn's timing, so it
    # is printed, not asserted: the expiry test above takes the token path every time).
    with open_tabs(browser, stack.url("/?ttl=1"), count=3) as pages:
        wait_all_live(pages)
        before = publish_all(stack, [f"before kill {n}" for n in range(3)])
        assert_every_tab_shows(pages, before)
        refused_before = refusals(stack)
        meanwhile = kill_stream_worker_while_publishing(
            stack, [f"during kill {n}" for n in range(10)])
        after = publish_all(stack, [f"after kill {n}" for n in range(3)])
        assert_every_tab_shows(pages, before + meanwhile + after)
        print(f"\n[tabs] refused with 401 meanwhile: {refusals(stack) - refused_before}")


def test_a_revocation_ends_the_subscription_in_every_tab(stack, browser):
    # The demo's tokens carry no subject: here the page's token requests get a user's token.
    minted: list[bytes] = []

    def user_token(route) -> None:
        code, _, body = stack.post(
            "/api/tokens", {"channels": [DEMO_CHANNEL], "ttl": 300, "subject": "tab-user"})
        minted.append(body)
        route.fulfill(status=code, content_type="application/json", body=body)

    browser.route("**/demo/token", user_token)
    try:
        with open_tabs(browser, stack.url("/"), count=3) as pages:
            wait_all_live(pages)
            code, _, answer = stack.post("/api/revocations", {"subject": "tab-user"})
            assert code == 201, answer
            wait_for(lambda: all(status(page, "data-state") == "revoked" for page in pages), 10,
                     "every tab to say revoked")
            time.sleep(1.0)  # on purpose: a reconnect with a fresh token would have come by now
            assert len(minted) == 1  # the leader's one token: none fetched behind the revocation
    finally:
        browser.unroute("**/demo/token", user_token)


def test_without_sharing_ten_tabs_exceed_the_six_connections_per_origin(stack, browser):
    # Each tab its own EventSource (?shared=0), as a page without eventgate.js would do: the
    # browser holds at most six connections to one origin over HTTP/1.1, all six taken by streams,
    # so the other tabs cannot even load.
    with open_tabs(browser, stack.url("/?shared=0"), waiting=True) as pages:
        wait_for(lambda: len(live(pages)) >= 6, 15, "six live tabs")
        time.sleep(1.0)  # on purpose: give the rest the time they would need to go live
        assert 6 <= len(live(pages)) < TABS
