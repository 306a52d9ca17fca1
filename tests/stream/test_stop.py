"""Stopping a stream pool (SIGTERM to its master, as ``make down``, a deploy and every test's
pool fixture do): each worker ends its streams itself, with their last words, and the pool
exits cleanly; the clients resume from their cursor elsewhere."""

from __future__ import annotations

from tests.clients import StreamClient, stream_path


def test_a_stopped_pool_ends_every_stream_with_a_retry_and_exits_0(make_pool, tokens, channel):
    pool = make_pool(workers=2)
    token, _ = tokens.issue([channel])
    clients = [StreamClient(pool.port, stream_path(token)).start().wait_open() for _ in range(4)]
    assert all(c.parser.last_event_id for c in clients)  # each holds a cursor to resume from

    # SIGTERM, and SIGKILL only if the pool is still running after stop_seconds (then -9).
    assert pool.program.stop() == 0

    for client in clients:
        assert client.ended.wait(5), "a stream outlived its pool"
        retry, comment, end = client.raw.rsplit(b"\n\n", 3)[-3:]
        assert retry.rpartition(b"\n")[2].startswith(b"retry: "), client.raw[-120:]
        assert comment == b": shutdown" and end == b"", client.raw[-120:]
    assert "Traceback" not in pool.log_text()
