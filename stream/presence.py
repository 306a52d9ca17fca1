"""PresenceLeases: this worker's presence leases (shared/presence.py), queued for the lease keeper.

Opening or closing a stream only appends to a list here — no Redis round trip, nothing that
blocks, callable from a libev callback — and the keeper (stream/limits.py) sends what is queued
in the pipeline it already sends (under Redis Cluster, one pipeline per node beside it), at most
50 ms after the first change: one script run per partition touched, whatever the number of
streams opened or closed since the last round. Renewals go the same way every heartbeat period.
"""

from __future__ import annotations

import heapq
import itertools
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
        settle_at = now + self.grace_seconds + _SETTLE_MARGIN_SECONDS
        if self.flush_at is None:
            self.flush_at = now + FLUSH_DELAY_SECONDS
        for channel in channels:
            members = self.open.get(channel)
            if members is not None:
                members.discard(member)
                if not members:
                    del self.open[channel]
            self._ops.setdefault(channel, []).extend(("-", member))
            if named and patterns and announces(patterns, channel):
                heapq.heappush(self._settle, (settle_at, channel))

    def pending(self, everything: bool = True) -> bool:
        """Whether changes (only those due, unless ``everything``) or a due settling run wait
        to be sent."""
        now = time.monotonic()
        if self._ops and (everything or (self.flush_at is not None and self.flush_at <= now)):
            return True
        return bool(self._settle and self._settle[0][0] <= now)

    def next_due(self) -> float | None:
        """When (monotonic) the queued changes or the next settling run are due, if ever."""
        times = [self.flush_at] if self.flush_at is not None else []
        if self._settle:
            times.append(self._settle[0][0])
        return min(times) if times else None

    def take_changes(self) -> dict[str, list[str]]:
        """The queued changes and the due settling runs, per channel (now taken: ``requeue``
        them should sending fail)."""
        taken, self._ops = self._ops, {}
        self.flush_at = None
        now = time.monotonic()
        while self._settle and self._settle[0][0] <= now:
            taken.setdefault(heapq.heappop(self._settle)[1], [])
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
