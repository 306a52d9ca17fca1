"""A new stream worker that gets many streams at once under Cluster subscribes every channel.

Its first stream makes the worker's pub/sub connection to a shard; making it yields (connect,
sends), and the streams opened meanwhile place their channels on that shard without writing
their own SSUBSCRIBE (the shard is not connected yet). Every one of them must be in the
connection's subscriptions all the same: before stream/shards.py's _connect_shard wrote the
channels placed while it wrote, from a few % to most of a burst's channels got no live event
(found by bench/scaling.py, whose load generator opens streams as fast as the worker takes
them; so does this test, from raw sockets: client threads arrive too slowly for the window)."""

from __future__ import annotations

import contextlib
import time

from eventgate.shared import keys
from eventgate.shared.publisher import Draft
from tests.clients import stream_path
from tests.cluster.burst import Burst
from tests.servers import wait_for
from tests.stream.pool import StreamPool

#: Streams opened at once, on CHANNELS channels (STREAMS / CHANNELS each).
STREAMS = 1000
CHANNELS = 200


def test_every_channel_of_a_burst_on_a_new_worker_gets_live_events(
    redis_cluster, publisher, tokens, secret_keys, publish_key, tmp_path
):
    base = f"burst{time.monotonic_ns()}"
    channels = [f"{base}.{n}" for n in range(CHANNELS)]
    pool = StreamPool(tmp_path, {
        "EVENTGATE_SECRET_KEY": ",".join(secret_keys),
        "EVENTGATE_PUBLISH_KEY": publish_key,
        "EVENTGATE_REDIS_URL": redis_cluster.url,
        "EVENTGATE_VAR_DIR": str(tmp_path / "var"),
        # Room in the worker's cluster pool for a burst's set-ups at once (redis-py's cluster
        # node pools do not wait for a free connection).
        "EVENTGATE_REDIS_POOL_SIZE": "1000",
    }).start()
    streams = [channels[n % CHANNELS] for n in range(STREAMS)]
    burst = Burst(pool.port, [stream_path(tokens.issue([name])[0]) for name in streams])
    try:
        # Every stream opens with its cursor (an ``id:`` frame) once its channel is subscribed.
        with contextlib.suppress(AssertionError):
            wait_for(lambda: not burst.without(b"\nid:"), 30, "every stream to open")
        assert not burst.without(b"\nid:"), f"{len(burst.without(b'id:'))} streams not open"
        publisher.publish_many([Draft(name, "m", '"live"') for name in channels])
        with contextlib.suppress(AssertionError):  # the assertion below says which
            wait_for(lambda: not burst.without(b"event: m\n"), 10, "an event on every stream")
        deaf = sorted({streams[i] for i in burst.without(b"event: m\n")})
        assert not deaf, f"{len(deaf)} channels got no live event, e.g. {deaf[:5]}"
    finally:
        burst.close()
        pool.stop()
    # The channels spread over every shard.
    assert len({redis_cluster.primary_of_slot(redis_cluster.slot_of(keys.log_key(name))).port
                for name in channels}) == len(redis_cluster.primaries())
