"""Two relay processes sharing one PostgreSQL outbox while four writers commit (issue 15): each
event is stored once, each channel's log keeps the commit order, and both relays did work (the
SKIP LOCKED claim spreads the channels over them and never gives one row to both)."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import sqlalchemy as sa

from eventgate.shared.outbox import Outbox
from tests.outbox.shop import commit_events, create_counters, log_seqs
from tests.servers import child_env, wait_for

ROOT = Path(__file__).resolve().parents[2]
WRITERS = 4
EVENTS_PER_WRITER = 500
#: Events per transaction (on one channel): half as many commits keep the test quick.
EVENTS_PER_COMMIT = 2
CHANNELS = 20


def relayed_count(output: str) -> int:
    """The count a stopped ``share`` relay printed last (``relayed <n>``)."""
    lines = [line for line in output.splitlines() if line.startswith("relayed ")]
    assert lines, f"the relay did not say what it relayed:\n{output[-2000:]}"
    return int(lines[-1].split()[1])


def test_two_relays_share_one_outbox_each_event_once_in_commit_order(
        postgres_url, redis_server, publisher, make_program, channel):
    engine = sa.create_engine(postgres_url, pool_size=WRITERS)
    outbox = Outbox(engine, publisher)
    channels = [f"{channel}.{n}" for n in range(CHANNELS)]
    outbox.create_tables()
    create_counters(engine, channels)
    relays = [
        make_program([sys.executable, "-m", "tests.outbox.relaydriver", "share", postgres_url,
                      redis_server.url], f"relay-{number}", cwd=ROOT, env=child_env())
        for number in range(2)
    ]
    for relay in relays:
        relay.wait_until(lambda relay=relay: "ready" in relay.output(), 20, "a relay ready")
    errors: list[BaseException] = []

    def write(offset: int) -> None:
        try:
            for number in range(EVENTS_PER_WRITER // EVENTS_PER_COMMIT):
                commit_events(engine, outbox, channels[(offset + number * 7) % CHANNELS],
                              EVENTS_PER_COMMIT)
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    writers = [threading.Thread(target=write, args=(n,)) for n in range(WRITERS)]
    try:
        for writer in writers:
            writer.start()
        for writer in writers:
            writer.join(60)
        assert not errors, errors
        wait_for(lambda: outbox.depth().rows == 0, 20, "the relays to drain the outbox")
        counts = [relayed_count(relay.output()) if relay.stop() is not None else 0
                  for relay in relays]
        with engine.connect() as connection:
            seqs = dict(connection.execute(sa.text("SELECT channel, n FROM counters")).all())
    finally:
        engine.dispose()

    total = WRITERS * EVENTS_PER_WRITER
    assert sum(seqs.values()) == total
    for name in channels:
        assert log_seqs(publisher.client, name) == list(range(1, seqs[name] + 1))
    assert sum(counts) == total  # no row published by both (a replay counts as relayed too)
    assert all(count > 0 for count in counts), counts
    print(f"relayed {counts} of {total}")
