"""A burst of stream opens through nginx onto two stream workers with a small per-worker cap:
where the streams land, and what the clients that did not get one were told.

    .venv/bin/python bench/full_workers.py [cap per worker: 20] [burst: 2 x cap] [rounds: 5]

Starts the whole stack (tests/stack.py: the real templates, nginx in front of a two-worker
stream pool) with ``EVENTGATE_MAX_STREAMS_PER_WORKER`` = cap and nginx's per-address limits
off, then per round opens ``burst`` streams at once (one thread each, released together) and
sorts the answers: ``opened`` (the pool's stream), ``retry`` (nginx's 200 retry fallback: an
EventSource comes back), ``refused`` (any other status, e.g. the pool's 503 ``server_busy``,
which an EventSource never retries). The workers' own records (stream/status.py) give the
streams each worker holds. Streams close between rounds.

The cap counts what the worker admits, so with burst = 2 x cap every client can get a stream
only if no worker refuses while the other still has room.
"""

from __future__ import annotations

import sys
import tempfile
import threading
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from eventgate.shared.status import read_records  # noqa: E402
from eventgate.shared.tokens import ChannelTokens  # noqa: E402
from tests.clients import StreamClient, stream_path  # noqa: E402
from tests.servers import wait_for  # noqa: E402
from tests.stack import Stack  # noqa: E402


def outcome(client: StreamClient) -> str:
    """What the client was told: the pool's stream, nginx's retry fallback, or a refusal."""
    if client.status == 200 and "content-length" not in client.response_headers:
        return "opened"  # the pool's stream (nginx relays it chunked)
    if client.is_stream and client.parser.retry is not None:
        return "retry"  # nginx's own 200: `retry:` and the end
    return f"refused {client.status}"


def burst(stack: Stack, token: str, size: int) -> tuple[Counter, list[StreamClient]]:
    """Open ``size`` streams at once; the answers' tally and every client (to close)."""
    gate = threading.Barrier(size)
    clients = [StreamClient(stack.port, stream_path(token)) for _ in range(size)]

    def open_one(client: StreamClient) -> None:
        gate.wait()
        try:
            client.start(timeout=15)
        except (OSError, AssertionError):
            client.status = -1

    threads = [threading.Thread(target=open_one, args=(c,)) for c in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return Counter(outcome(c) for c in clients), clients


def per_worker(stack: Stack) -> list[int]:
    """Streams held by each live stream worker, from their status records."""
    return sorted((r["streams"] for r in read_records(stack.redis())), reverse=True)


def main() -> None:
    cap = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    size = int(sys.argv[2]) if len(sys.argv) > 2 else 2 * cap
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 5
    settings = {
        "EVENTGATE_MAX_STREAMS_PER_WORKER": str(cap),
        "EVENTGATE_STREAM_CONNECT_RATE": "0",
        "EVENTGATE_CONNECTIONS_PER_ADDRESS": "0",
        "EVENTGATE_STATUS_INTERVAL": "0.5",
        "EVENTGATE_HEARTBEAT": "5",
    }
    with tempfile.TemporaryDirectory() as workdir:
        stack = Stack(Path(workdir), stream_workers=2, settings=settings).start()
        try:
            token = ChannelTokens([stack.secret_key]).issue(["bench.full"])[0]
            wait_for(lambda: len(per_worker(stack)) == 2, 10, "both workers' records")
            print(f"cap {cap} per worker, 2 workers, burst {size}, {rounds} rounds")
            for n in range(rounds):
                tally, clients = burst(stack, token, size)
                opened = tally["opened"]
                # the records, once they count every stream opened
                wait_for(lambda want=opened: sum(per_worker(stack)) == want, 10,
                         "the workers' records")
                split = per_worker(stack)
                print(f"round {n + 1}: {dict(sorted(tally.items()))}; streams per worker {split}"
                      f" (opened {opened} of {size})")
                for client in clients:
                    client.close()
                wait_for(lambda: sum(per_worker(stack)) == 0, 15, "every stream closed")
        finally:
            stack.stop()


if __name__ == "__main__":
    main()
