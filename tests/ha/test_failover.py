"""Failover with everything real: a Sentinel set (primary, two replicas, three sentinels), a web
pool and a durable web pool publishing numbered events with an Idempotency-Key each at a steady
rate and retrying until confirmed, and stream clients on async and durable channels, some cutting
and resuming their streams throughout (the ``scenario`` fixture, tests/ha/scenario.py). Each test
strikes one fault; tests/ha/verdict.py says what every client must end with. Run with ``-s`` to
see the failover timeline each test measured (docs/ha.md quotes it)."""

from __future__ import annotations

import socket
import threading
from signal import SIGKILL

import redis

from tests.servers import LOOPBACK

#: How long a frozen primary sleeps: well past the sentinels' down-after (1 s) and the failover
#: they then run (a new primary about 2 s after the freeze here), so it wakes deposed.
FREEZE_SECONDS = 4
#: How long after a ``SENTINEL FAILOVER`` a durable publish confirmed by the old primary may
#: be lost: the replica left behind acknowledges its writes until the sentinels move it, but
#: eventgate leaves the old primary as the leader sends the chosen replica REPLICAOF NO ONE
#: (``+failover-state-wait-promotion``, ~0.2 s after the command here; shared/primary.py), so
#: only a publish in flight at that instant can be lost (none in the tests).
DURABLE_LOSS_WINDOW_SECONDS = 1.0


def test_kill_9_of_the_primary(scenario):
    verdict = scenario.fail_over(lambda old: old.signal(SIGKILL), "kill -9 of the primary")

    assert not verdict.problems, "\n".join(verdict.problems)


def test_sentinel_failover(scenario, failover_set):
    """The old primary stays writable until a sentinel next looks at it (up to 10 s): eventgate
    must leave it for the promoted replica as the sentinels announce the promotion. Durable
    publish has a known window here (docs/ha.md): the replica not promoted keeps acknowledging
    the old primary's writes until the sentinels move it, about a second after the promotion,
    and then resyncs from the new primary without them; a publish confirmed later than
    DURABLE_LOSS_WINDOW_SECONDS after the fault must not be lost."""
    verdict = scenario.fail_over(
        lambda _old: failover_set.sentinel().execute_command(
            "SENTINEL", "FAILOVER", failover_set.service),
        "SENTINEL FAILOVER", durable_loss_until=DURABLE_LOSS_WINDOW_SECONDS)

    assert not verdict.problems, "\n".join(verdict.problems)


def test_primary_frozen_then_back_as_a_replica(scenario):
    verdict = scenario.fail_over(lambda old: freeze(old.port, FREEZE_SECONDS),
                                 "primary frozen (DEBUG SLEEP), back as a replica")

    assert not verdict.problems, "\n".join(verdict.problems)


def test_stream_workers_pubsub_connection_killed(scenario, failover_set):
    primary = failover_set.primary()

    scenario.strike(lambda: kill_stream_pubsub(primary.client()))
    verdict = scenario.finish(None, "stream worker's pub/sub connection killed")

    assert not verdict.problems, "\n".join(verdict.problems)
    assert not any(verdict.figures["confirmed_lost"].values())  # no failover: nothing lost
    assert failover_set.primary() is primary


def freeze(port: int, seconds: int) -> None:
    """``DEBUG SLEEP seconds`` on the Redis at ``port``, without waiting for it to wake: the
    command is written and the answer left to a thread that reads it once the server wakes."""
    sock = socket.create_connection((LOOPBACK, port), timeout=seconds + 10)
    sock.sendall(f"*3\r\n$5\r\nDEBUG\r\n$5\r\nSLEEP\r\n${len(str(seconds))}\r\n{seconds}\r\n"
                 .encode())

    def answer() -> None:
        with sock:
            sock.recv(64)

    threading.Thread(target=answer, daemon=True).start()


def kill_stream_pubsub(client: redis.Redis) -> int:
    """Kill the stream workers' pub/sub connections (named ``eventgate-stream-<pid>``), not the
    sentinels' own; how many."""
    doomed = [entry["id"] for entry in client.client_list()
              if entry.get("name", "").startswith("eventgate-stream")
              and int(entry.get("sub", 0)) + int(entry.get("psub", 0)) > 0]
    assert doomed, client.client_list()
    for client_id in doomed:
        client.client_kill_filter(_id=client_id)
    return len(doomed)
