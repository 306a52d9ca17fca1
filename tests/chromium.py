"""Debian's chromium, driven by Playwright's Python package (Playwright's own browser download is
never used): a headless context with its own profile, for the ``browser`` fixtures."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


@contextlib.contextmanager
def chromium_context(profile: Path, extra_args: Sequence[str] = ()) -> Iterator:
    """A persistent Playwright context (``profile`` is its user-data-dir) of headless Chromium,
    started with ``extra_args`` too; ``new_page()`` opens a tab. Without chromium the test fails
    with the hint to install it, rather than skip: ``make test`` installs it
    (deploy/system-deps.sh --test), so CI cannot pass without these tests."""
    if not shutil.which("chromium"):
        pytest.fail("Debian's chromium is missing: run `make test-deps` (or apt-get install "
                    "chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, headless=True,
            args=[*CHROMIUM_ARGS, *extra_args],
        )
        context.set_default_timeout(15000)
        try:
            yield context
        finally:
            context.close()
