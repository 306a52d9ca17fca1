"""How long a stream pool takes to stop: SIGTERM to the gunicorn master until it has exited.

    .venv/bin/python bench/pool_stop.py [stops: 10] [workers: 1] [streams: 0] [how: TERM]

Each round starts a pool exactly as the tests do (tests/stream/pool.py: the supervisor
template's flags) on a throwaway redis-server, waits until its worker holds its pub/sub
connection and ``streams`` open streams (which must each end with their ``retry:``), then sends
SIGTERM to the master alone (``TERM``, what the tests send), to the master and its workers
together (``TERMGROUP``: supervisord's ``stopasgroup=true``), or SIGQUIT to the master (``QUIT``,
gunicorn's quick stop), and times the master's exit. Prints
every stop and the median, in seconds. Stopping is what the test suite does after almost every
stream test, and what a deploy or ``make restart`` waits for.
"""

from __future__ import annotations

import os
import secrets
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from eventgate.shared.tokens import ChannelTokens  # noqa: E402
from tests.clients import StreamClient, stream_path  # noqa: E402
from tests.servers import RedisServer  # noqa: E402
from tests.stream.pool import StreamPool, pool_settings  # noqa: E402


def stop_once(pool: StreamPool, streams: int, how: str) -> float:
    """Seconds from the signal to the master's exit; every open stream must have ended with a
    ``retry:`` by then."""
    pool.start()
    try:
        keys = (pool.env["EVENTGATE_SECRET_KEY"],)
        token, _ = ChannelTokens(keys).issue([f"bench.stop.{secrets.token_hex(4)}"])
        clients = [StreamClient(pool.port, stream_path(token)).start(timeout=10).wait_open()
                   for _ in range(streams)]
        workers = pool.worker_pids() if how == "TERMGROUP" else []
        began = time.monotonic()
        pool.signal(signal.SIGQUIT if how == "QUIT" else signal.SIGTERM)
        for pid in workers:
            os.kill(pid, signal.SIGTERM)
        pool.program.wait(30)
        took = time.monotonic() - began
    finally:
        pool.stop()  # a failed round leaves no pool behind (a no-op once it exited)
    for client in clients:
        assert client.ended.wait(5), "a stream still open after its pool stopped"
        assert b"retry:" in client.raw.rpartition(b": shutdown")[0][-40:], \
            f"a stream ended without its last retry: {client.raw[-120:]!r}"
        client.close()
    return took


def main() -> None:
    stops = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    workers = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    streams = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    how = sys.argv[4] if len(sys.argv) > 4 else "TERM"
    assert how in ("TERM", "TERMGROUP", "QUIT"), how
    with tempfile.TemporaryDirectory(prefix="pool-stop-") as tmp:
        workdir = Path(tmp)
        redis_server = RedisServer(workdir / "redis")
        redis_server.start()
        try:
            env = pool_settings(redis_server.url, (secrets.token_urlsafe(32),),
                                secrets.token_urlsafe(32), workdir / "var")
            times = []
            for _ in range(stops):
                took = stop_once(StreamPool(workdir, env, workers), streams, how)
                times.append(took)
                print(f"stop {took:.3f} s", flush=True)
        finally:
            redis_server.stop()
    print(f"median of {stops} stops ({workers} worker(s), {streams} stream(s), "
          f"{how}): "
          f"{statistics.median(times):.3f} s; loadavg {Path('/proc/loadavg').read_text().strip()}")


if __name__ == "__main__":
    main()
