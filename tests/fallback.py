"""nginx's retry fallback (``location @stream_unavailable``) as the tests read it: a 200 event
stream holding only ``retry: <ms>``, the delay jittered per answer over 0.5–1.5 × the base, as
the pool jitters its own (stream/opening.py, ``jittered``). Checked against those bounds, not
against the rendered values, so that a wrong map fails."""

from __future__ import annotations

import re
from collections.abc import Iterable

from eventgate.deploy.render import FALLBACK_RETRY_MS

#: The whole body of a fallback answer.
FALLBACK_BODY = re.compile(rb"retry: ([0-9]+)\n\n")
#: The same as the text of a verdict or a log: its first line.
FALLBACK_LINE = re.compile(r"retry: ([0-9]+)")
LOWEST, HIGHEST = FALLBACK_RETRY_MS // 2, FALLBACK_RETRY_MS * 3 // 2


def in_bounds(delay: int) -> bool:
    return LOWEST <= delay <= HIGHEST


def fallback_delay(body: bytes) -> int:
    """The delay a fallback answer's body asks for; fails unless the body is only a ``retry:``
    within the bounds."""
    match = FALLBACK_BODY.fullmatch(body)
    assert match, body
    delay = int(match.group(1))
    assert in_bounds(delay), (delay, LOWEST, HIGHEST)
    return delay


def assert_spread(delays: Iterable[int]) -> None:
    """Many answers (some dozens) bring browsers back at many different moments, over the
    whole range: more than a few distinct delays, some in its lowest and highest quarters."""
    delays = list(delays)
    assert len(delays) >= 48, "too few answers to judge a spread"
    assert all(in_bounds(delay) for delay in delays), delays
    assert len(set(delays)) >= 8, sorted(set(delays))
    quarter = (HIGHEST - LOWEST) // 4
    assert min(delays) <= LOWEST + quarter and max(delays) >= HIGHEST - quarter, sorted(delays)
