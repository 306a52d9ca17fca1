"""A relay in a process of its own, for the tests that kill one or run two:
``python -m tests.outbox.relaydriver MODE DATABASE_URL REDIS_URL [GO_FILE]``; with ``GO_FILE`` it
starts relaying only once that file exists (a test starts the next relay while it still kills
the previous one: Python's imports then cost no time of the test).

``slow-mark``: a relay whose mark waits ``MARK_DELAY_SECONDS`` after Redis confirmed, printing
``marking <ids>`` first, so that a test can kill -9 it exactly between publish and mark (a
test-only subclass: production has no such knob). ``share``: a plain relay loop that prints
``ready``, runs until SIGTERM, then prints ``relayed <count>``.
"""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

import sqlalchemy as sa

from eventgate.shared.outboxtable import outbox_table
from eventgate.shared.publisher import Publisher
from eventgate.shared.relay import Listener, Relay, RelayLoop

#: How long the slow relay holds published rows unmarked: the test's window to kill it.
MARK_DELAY_SECONDS = 0.2


class SlowMarkRelay(Relay):
    """Publishes, says which rows it is about to mark, and dawdles before marking them."""

    def _mark(self, connection, confirmed):  # type: ignore[no-untyped-def]
        if confirmed:
            print("marking " + ",".join(str(row_id) for row_id, _ in confirmed), flush=True)
            time.sleep(MARK_DELAY_SECONDS)  # on purpose: the window the test kills in
        super()._mark(connection, confirmed)


def main(mode: str, database_url: str, redis_url: str, go_file: str = "") -> None:
    while go_file and not Path(go_file).exists():
        time.sleep(0.01)  # on purpose: the poll interval
    engine = sa.create_engine(database_url)
    publisher = Publisher.from_url(redis_url)
    kind = SlowMarkRelay if mode == "slow-mark" else Relay
    relay = kind(engine, publisher, outbox_table())
    listener = Listener(engine) if engine.dialect.name == "postgresql" else None
    loop = RelayLoop(relay, listener=listener, sweep_seconds=0.2, max_backoff_seconds=0.5)
    if mode == "slow-mark":
        loop.run()  # until killed
        return
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    loop.start()
    print("ready", flush=True)
    signal.sigwait({signal.SIGTERM})
    loop.stop()
    print(f"relayed {relay.relayed}", flush=True)
    engine.dispose()


if __name__ == "__main__":
    main(*sys.argv[1:5])
