"""Presence across two stream workers: the API's counts, one join per subject and one leave
after the grace period, no pair for a reconnect within it, joins replayed on resume, and the
bound within which a worker killed with SIGKILL stops counting (measured and printed)."""

from __future__ import annotations

import json
import os
import signal
import time

from tests.presence.rooms import GRACE_SECONDS, HEARTBEAT_SECONDS, LEASE_SECONDS, room
from tests.servers import wait_for


def test_counts_across_workers_one_join_per_subject_and_leave_after_grace(rooms):
    channel = room()
    before = rooms.publish(channel)
    alice = [rooms.open(0, channel, "alice"), rooms.open(1, channel, "alice")]
    rooms.open(1, channel, None)
    rooms.open(0, channel, "bob")
    assert wait_for(lambda: rooms.held(channel) == (4, {"alice": 2, "bob": 1}), 5,
                    "presence of 4 streams, alice's 2 and bob's 1")
    found = rooms.presence(channel)
    assert found["channel"] == channel
    assert all(s["since"].endswith("Z") for s in found["subjects"])
    wait_for(lambda: len(rooms.announced(channel)) == 2, 5, "the joins")
    assert sorted(rooms.announced(channel)) == [("join", "alice"), ("join", "bob")]

    # A stream that resumes from before the joins gets them from the log.
    late = rooms.open(0, channel, "carol", {"Last-Event-ID": before})
    events = late.wait_events(2)
    assert {(e.type, json.loads(e.data)["subject"]) for e in events[:2]} == {
        ("eventgate.join", "alice"), ("eventgate.join", "bob")}

    closed_at = time.monotonic()
    for stream in alice:
        stream.close()
    wait_for(lambda: ("leave", "alice") in rooms.announced(channel), GRACE_SECONDS + 5,
             "alice's leave")
    waited = time.monotonic() - closed_at
    assert waited >= GRACE_SECONDS - 0.2, f"the leave came {waited:.2f}s after the close"
    assert rooms.announced(channel).count(("leave", "alice")) == 1
    assert rooms.announced(channel).count(("join", "alice")) == 1
    assert rooms.held(channel) == (3, {"bob": 1, "carol": 1})


def test_reconnect_within_grace_is_no_leave_join_pair(rooms):
    channel = room()
    first = rooms.open(0, channel, "dana")
    wait_for(lambda: rooms.announced(channel) == [("join", "dana")], 5, "dana's join")
    first.close()
    again = rooms.open(1, channel, "dana")  # a reconnect, to the other worker
    wait_for(lambda: rooms.held(channel) == (1, {"dana": 1}), 5, "dana's new stream")
    again.close()
    wait_for(lambda: ("leave", "dana") in rooms.announced(channel), GRACE_SECONDS + 5,
             "dana's leave")
    assert rooms.announced(channel) == [("join", "dana"), ("leave", "dana")]


def test_presence_converges_after_kill_9_within_the_stated_bound(rooms, presence_pools):
    channel = room()
    rooms.open(0, channel, "erin")
    rooms.open(0, channel, "erin")
    rooms.open(1, channel, "fred")
    wait_for(lambda: rooms.held(channel) == (3, {"erin": 2, "fred": 1}), 5, "3 streams")
    (victim,) = presence_pools[0].worker_pids()
    killed_at = time.monotonic()
    os.kill(victim, signal.SIGKILL)
    bound = LEASE_SECONDS + HEARTBEAT_SECONDS  # stated in docs/protocol.md
    wait_for(lambda: rooms.held(channel) == (1, {"fred": 1}), bound + 1.0, "erin gone")
    dropped = time.monotonic() - killed_at
    # The leave: once pruned, the grace period, then the next touch (fred's renewal).
    leave_bound = bound + GRACE_SECONDS + HEARTBEAT_SECONDS
    wait_for(lambda: ("leave", "erin") in rooms.announced(channel), leave_bound + 1.0,
             "erin's leave")
    left = time.monotonic() - killed_at
    print(f"\npresence after kill -9: dropped in {dropped:.2f}s (bound {bound:.1f}s), "
          f"leave written in {left:.2f}s (bound {leave_bound:.1f}s)")
    assert dropped <= bound + 0.5
    announced = rooms.announced(channel)
    # The two joins come from two workers' keepers, in either order.
    assert sorted(announced[:2]) == [("join", "erin"), ("join", "fred")], announced
    assert announced[2:] == [("leave", "erin")], announced
