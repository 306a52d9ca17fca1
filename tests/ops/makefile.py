"""The repository's Makefile run as a user runs it: ``make(target, env)`` from the checkout, with
a deadline long enough for a cold ``make up``."""

from __future__ import annotations

import subprocess

from tests.stack import REPO_ROOT

MAKE_SECONDS = 180


def make(target: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """``make <target>`` in the checkout with ``env``; never raises on a failed target (the
    caller asserts on ``returncode`` and shows the output)."""
    return subprocess.run(["make", target], cwd=REPO_ROOT, env=env, capture_output=True,
                          text=True, timeout=MAKE_SECONDS, check=False)
