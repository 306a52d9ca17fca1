"""A real headless Chromium (Debian's ``chromium``, driven by Playwright's Python package).

Playwright's own browser download is never used: the system executable is launched with a
fresh profile per test module. ``make test`` installs chromium (deploy/system-deps.sh --test);
without it these tests fail with that hint rather than skip, so CI cannot pass without them.
"""

from __future__ import annotations

import shutil

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """A Chromium context (its own user-data-dir); ``browser.new_page()`` opens a tab."""
    if not shutil.which("chromium"):
        pytest.fail("Debian's chromium is missing: run `make test-deps` (or apt-get install "
                    "chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
        )
        context.set_default_timeout(15000)
        yield context
        context.close()
