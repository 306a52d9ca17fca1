"""PresenceLeases' schedule of settling runs (the leaves due after a close's grace period): a
stream of closes on an announcing channel costs the keeper one round per 50 ms step, not one per
close, and a settling run due while changes are queued goes with them."""

from __future__ import annotations

from types import SimpleNamespace

from eventgate.stream import presence
from eventgate.stream.presence import FLUSH_DELAY_SECONDS, PresenceLeases

GRACE_SECONDS = 5.0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def leases(monkeypatch) -> tuple[PresenceLeases, Clock]:
    clock = Clock()
    monkeypatch.setattr(presence.time, "monotonic", clock)
    script = SimpleNamespace(patterns=("room.*",))
    return PresenceLeases(script, GRACE_SECONDS), clock


def keeper_rounds(held: PresenceLeases, clock: Clock) -> list[tuple[float, dict]]:
    """What the keeper sends, as it would: wake at ``next_due``, take, until nothing is left."""
    rounds = []
    while (due := held.next_due()) is not None:
        clock.now = max(clock.now, due)
        assert held.pending(everything=False)
        rounds.append((clock.now, held.take_changes()))
    return rounds


def test_a_stream_of_closes_settles_once_per_step_and_after_the_grace(monkeypatch):
    held, clock = leases(monkeypatch)
    start = clock.now
    members = [held.opened(f"user-{i % 50}", ["room.a"]) for i in range(200)]
    held.take_changes()
    for member in members:  # one close every 5 ms for a second
        held.closed(member, ["room.a"])
        clock.now += 0.005
    last_close = clock.now - 0.005
    clock.now = start + 0.5
    rounds = keeper_rounds(held, clock)
    settling = [(at, taken) for at, taken in rounds if taken == {"room.a": []}]
    assert 1 <= len(settling) <= 1.0 / FLUSH_DELAY_SECONDS + 2, len(settling)
    assert settling[0][0] >= start + GRACE_SECONDS
    assert settling[-1][0] >= last_close + GRACE_SECONDS  # the last close's leave is settled too
    assert not held.pending() and held.next_due() is None


def test_a_settling_run_due_while_changes_wait_goes_with_them(monkeypatch):
    held, clock = leases(monkeypatch)
    held.closed(held.opened("alice", ["room.a"]), ["room.a"])
    held.take_changes()
    clock.now += GRACE_SECONDS + 0.2  # the settling run is due
    held.opened("bob", ["room.b"])  # and changes are queued, due 50 ms later
    assert not held.pending(everything=False)
    clock.now += FLUSH_DELAY_SECONDS
    assert held.pending(everything=False)
    taken = held.take_changes()
    assert taken["room.a"] == [] and taken["room.b"][0] == "+"
    assert held.next_due() is None


def test_two_settling_steps_of_a_channel_due_at_one_round_are_both_taken(monkeypatch):
    # A keeper that wakes late (changes queued kept it waiting) finds two grid steps of one
    # channel due together: one run of the channel settles both.
    held, clock = leases(monkeypatch)
    first, second = held.opened("alice", ["room.a"]), held.opened("bob", ["room.a"])
    held.take_changes()
    held.closed(first, ["room.a"])
    clock.now += 3 * FLUSH_DELAY_SECONDS
    held.closed(second, ["room.a"])
    clock.now += GRACE_SECONDS + 1.0
    taken = held.take_changes()
    assert taken["room.a"] == ["-", first, "-", second]
    assert held.next_due() is None and not held.pending()
