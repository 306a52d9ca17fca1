"""PresenceLeases: this worker's presence leases (shared/presence.py), queued for the lease keeper.

Opening or closing a stream only appends to a list here — no Redis round trip, nothing that
blocks, callable from a libev callback — and the keeper (stream/limits.py) sends what is queued
in the pipeline it already sends (under Redis Cluster, one pipeline per node beside it), at most
50 ms after the first change: one script run per partition touched, whatever the number of
streams opened or closed since the last round. Renewals go the same way every heartbeat period.

A close on an announcing channel also asks for a settling run once its grace period is over (the
leave, if due). Those ride with the queued changes when there are any, and otherwise fall due on
a 50 ms grid, one per channel and grid step: under a stream of closes a run per close would cost
the keeper a round trip every few closes (as it did: 0.10 script runs per open instead of 0.007),
while any run of the channel writes every leave due by then.
"""

from __future__ import annotations

import heapq
import itertools
import math
import secrets
import time
from collections.abc import Sequence

from eventgate.shared.presence import PresenceScript, announces

#: Members renewed per script run.
_RENEW_BATCH = 500
#: How long the changes of opens and closes wait to be sent together: under an accept storm one
#: round carries many, so the keeper's work per open stays small.
FLUSH_DELAY_SECONDS = 0.05
#: A leave is settled this long after its grace period ends (Redis's clock and ours differ).
_SETTLE_MARGIN_SECONDS = 0.1


class PresenceLeases:
    """The presence members of this worker's open streams, and the changes not yet sent."""

    def __init__(self, script: PresenceScript, grace_seconds: float) -> None:
        self.script = script
        self.grace_seconds = grace_seconds
        #: channel -> its open streams' members (for renewal).
        self.open: dict[str, set[str]] = {}
        self._ops: dict[str, list[str]] = {}
        self._settle: list[tuple[float, str]] = []
        #: channel -> the last grid step a settling run was scheduled for (steps only grow).
        self._settle_step: dict[str, int] = {}
        #: When the queued changes are to be sent (None: nothing queued).
        self.flush_at: float | None = None
        # Members are unique per worker without a random draw per stream (a system call).
        self._tag = secrets.token_hex(4)
        self._count = itertools.count()

    def opened(self, subject: str | None, channels: Sequence[str]) -> str:
        """A stream of ``subject`` opened on ``channels``: its member, queued for adding."""
        member = f"{subject or ''}|{int(time.time() * 1000)}.{self._tag}{next(self._count):x}"
        if self.flush_at is None:
            self.flush_at = time.monotonic() + FLUSH_DELAY_SECONDS
        for channel in channels:
            self.open.setdefault(channel, set()).add(member)
            self._ops.setdefault(channel, []).extend(("+", member))
        return member

    def closed(self, member: str, channels: Sequence[str]) -> None:
        """The stream holding ``member`` closed: queue its removal, and for a named subject on an
        announcing channel a settling run once its grace period is over (the leave, if due)."""
        patterns = self.script.patterns
        named = not member.startswith("|")
        now = time.monotonic()
        # Rounded up to the grid: the closes of one step share one settling run per channel.
        step = math.ceil((now + self.grace_seconds + _SETTLE_MARGIN_SECONDS) / FLUSH_DELAY_SECONDS)
        if self.flush_at is None:
            self.flush_at = now + FLUSH_DELAY_SECONDS
        for channel in channels:
            members = self.open.get(channel)
            if members is not None:
                members.discard(member)
                if not members:
                    del self.open[channel]
            self._ops.setdefault(channel, []).extend(("-", member))
            if (
                named and patterns and self._settle_step.get(channel) != step
                and announces(patterns, channel)
            ):
                self._settle_step[channel] = step
                heapq.heappush(self._settle, (step * FLUSH_DELAY_SECONDS, channel))

    def pending(self, everything: bool = True) -> bool:
        """Whether changes (only those due, unless ``everything``) or a due settling run wait
        to be sent."""
        if self._ops and everything:
            return True
        due = self.next_due()
        return due is not None and due <= time.monotonic()

    def next_due(self) -> float | None:
        """When (monotonic) the queued changes are due, or else the next settling run, if
        ever: a settling run due while changes are queued waits for them (at most
        FLUSH_DELAY_SECONDS), so that both take one round trip."""
        if self.flush_at is not None:
            return self.flush_at
        return self._settle[0][0] if self._settle else None

    def take_changes(self) -> dict[str, list[str]]:
        """The queued changes and the due settling runs, per channel (now taken: ``requeue``
        them should sending fail)."""
        taken, self._ops = self._ops, {}
        self.flush_at = None
        now = time.monotonic()
        while self._settle and self._settle[0][0] <= now:
            channel = heapq.heappop(self._settle)[1]
            taken.setdefault(channel, [])
            step = self._settle_step.get(channel)
            if step is not None and step * FLUSH_DELAY_SECONDS <= now:
                # None scheduled later: forget the channel (an earlier entry of the same round
                # may have forgotten it already).
                del self._settle_step[channel]
        return taken

    def requeue(self, taken: dict[str, list[str]]) -> None:
        """Put back changes a failed round may not have applied (every op is idempotent: an
        add of a present member or a removal of an absent one changes nothing)."""
        for channel, ops in taken.items():
            self._ops[channel] = ops + self._ops.get(channel, [])
        if taken and self.flush_at is None:
            self.flush_at = time.monotonic()

    def renewals(self) -> list[tuple[str, list[str]]]:
        """A renewal of every open member, per channel (each run also prunes the channel)."""
        runs = []
        for channel, members in self.open.items():
            listed = list(members)
            for start in range(0, len(listed), _RENEW_BATCH):
                ops: list[str] = []
                for member in listed[start : start + _RENEW_BATCH]:
                    ops += ("+", member)
                runs.append((channel, ops))
        return runs
