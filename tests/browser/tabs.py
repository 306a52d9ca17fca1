"""Tabs of a page in one browser, from a test: open many at once, read the demo page's status
line (``#status``: ``data-state`` "live" once its stream is open, ``data-leader``)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from playwright.sync_api import Error as PlaywrightError

from tests.servers import wait_for

#: More than HTTP/1.1's six connections per origin.
TABS = 10


@contextlib.contextmanager
def open_tabs(browser, url: str, count: int = TABS, *, waiting: bool = False,
              prepare: Callable[[Any], object] | None = None) -> Iterator[list]:
    """``count`` tabs navigating to ``url`` at once (a navigation is started, not awaited: a tab
    that cannot get a connection would block the next ones), closed at the end even when the
    test fails: a tab left open would hold its stream's lock into the next test. ``waiting``:
    some tabs may still wait for a connection; close them without waiting (that can hang).
    ``prepare`` is called with each tab before any navigates (to watch its network)."""
    pages = [browser.new_page() for _ in range(count)]
    try:
        for page in pages:
            if prepare is not None:
                prepare(page)
        for page in pages:
            page.evaluate("url => { location.href = url; }", url)
        yield pages
    finally:
        for page in pages:
            if not page.is_closed():
                page.close(run_before_unload=waiting)


def status(page, attribute: str) -> str | None:
    """An attribute of the tab's status line; None while the tab has no document (it waits for
    a connection: asking without a timeout would wait with it)."""
    try:
        return page.get_attribute("#status", attribute, timeout=100)
    except PlaywrightError:  # no #status yet (a timeout), or between documents
        return None


def live(pages) -> list:
    return [page for page in pages if status(page, "data-state") == "live"]


def wait_all_live(pages, timeout: float = 15.0) -> None:
    try:
        wait_for(lambda: len(live(pages)) == len(pages), timeout, f"{len(pages)} live tabs")
    except AssertionError as error:
        states = [(status(page, "data-state"), status(page, "data-leader")) for page in pages]
        raise AssertionError(f"{error}\ntabs (state, leader): {states}") from None
