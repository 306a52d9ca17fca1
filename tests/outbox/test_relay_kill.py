"""A relay killed (kill -9) between publishing and marking, again and again, while the app keeps
committing (issue 15), on PostgreSQL and SQLite: no event is lost, none is stored twice, each
channel's log keeps the commit order.

The window is made wide and visible by tests/outbox/relaydriver.py (``slow-mark``: it prints the
rows it is about to mark, then waits before marking); the test kills it on that line and then
checks in the database that the kill landed (those rows still unmarked). The next relay
publishes them again under the same idempotency keys: Redis answers with the stored ids.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from signal import SIGKILL

import sqlalchemy as sa

from eventgate.shared.outbox import Outbox
from tests.outbox.shop import commit_events, create_counters, log_seqs
from tests.servers import child_env, wait_for

ROOT = Path(__file__).resolve().parents[2]
KILLS = 6
CHANNELS = 4


class Writer(threading.Thread):
    """Commits an event after another, round-robin over ``channels``, until ``finish()``."""

    def __init__(self, engine: sa.Engine, outbox: Outbox, channels: list[str]) -> None:
        super().__init__(name="writer", daemon=True)
        self.engine, self.outbox, self.channels = engine, outbox, channels
        self.committed = 0
        self.error: BaseException | None = None
        self._done = threading.Event()

    def run(self) -> None:
        try:
            while not self._done.is_set():
                commit_events(self.engine, self.outbox, self.channels[self.committed % CHANNELS])
                self.committed += 1
                self._done.wait(0.02)  # pacing: a busy app, not a flood (fewer rows to replay)
        except BaseException as error:  # noqa: BLE001 - reported by finish()
            self.error = error

    def finish(self) -> int:
        self._done.set()
        self.join(30)
        assert self.error is None, f"the writer failed: {self.error!r}"
        return self.committed


def marking(output: str) -> list[int] | None:
    """The row ids of the slow relay's first ``marking`` line, once it printed one."""
    for line in output.splitlines():
        if line.startswith("marking ") and line.endswith(tuple("0123456789")):
            return [int(row_id) for row_id in line.split()[1].split(",")]
    return None


def unmarked(engine: sa.Engine, outbox: Outbox, ids: list[int]) -> bool:
    table = outbox.table
    with engine.connect() as connection:
        marked = connection.execute(
            sa.select(sa.func.count()).where(table.c.id.in_(ids), table.c.event_id.is_not(None))
        ).scalar_one()
    return marked == 0


def test_relays_killed_between_publish_and_mark_lose_and_duplicate_nothing(
        database_url, redis_server, publisher, make_program, channel, tmp_path):
    engine = sa.create_engine(database_url)
    outbox = Outbox(engine, publisher)
    channels = [f"{channel}.{n}" for n in range(CHANNELS)]
    outbox.create_tables()
    create_counters(engine, channels)
    writer = Writer(engine, outbox, channels)
    writer.start()
    landed = 0

    def start_relay(number: int):
        return make_program(
            [sys.executable, "-m", "tests.outbox.relaydriver", "slow-mark", database_url,
             redis_server.url, tmp_path / f"go-{number}"], f"relay-{number}", cwd=ROOT,
            env=child_env(),
        )

    try:
        relays = [start_relay(0), start_relay(1)]  # the next one always imports meanwhile
        for attempt in range(KILLS):
            relay = relays[attempt]
            (tmp_path / f"go-{attempt}").touch()
            ids = relay.wait_until(lambda relay=relay: marking(relay.output()), 20,
                                   "the relay to publish and start marking")
            relay.signal(SIGKILL)
            if attempt + 2 < KILLS:
                relays.append(start_relay(attempt + 2))
            relay.wait(10)
            landed += unmarked(engine, outbox, ids)
        committed = writer.finish()
        # A clean relay to the end: what the killed ones left is published again (replayed).
        # On PostgreSQL the last killed relay's rows stay locked (skipped) until its server
        # process notices the dead connection.
        wait_for(lambda: outbox.relay() >= 0 and outbox.depth().rows == 0, 10,
                 "a clean relay to relay everything")
        with engine.connect() as connection:
            counts = dict(connection.execute(sa.text("SELECT channel, n FROM counters")).all())
    finally:
        writer.finish()
        engine.dispose()

    assert sum(counts.values()) == committed > KILLS
    for name in channels:
        assert log_seqs(publisher.client, name) == list(range(1, counts[name] + 1))
    assert landed >= KILLS - 2, f"only {landed} of {KILLS} kills landed between publish and mark"
    print(f"{committed} events, {landed}/{KILLS} kills between publish and mark")
