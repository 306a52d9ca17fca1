"""The hand-set clock of the token tests: ``clock`` (tests/unit/conftest.py) installs a Clock at
T0 in both shared.tokens and itsdangerous; a test moves time by setting ``clock.now``."""

from __future__ import annotations

T0 = 1_800_000_000.0


class Clock:
    """The one clock both shared.tokens and itsdangerous read during a test."""

    def __init__(self, now: float) -> None:
        self.now = now

    def time(self) -> float:
        return self.now
