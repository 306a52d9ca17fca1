"""Publishing under Redis Cluster: a batch split by partition keeps the request's order and each
log's prev chain, goes live over sharded pub/sub, an Idempotency-Key covers the whole batch
(also after a publish cut off midway), WAIT confirms on each part's node, redirects and a
missing script are followed, and the web app publishes and answers /readyz against it."""

from __future__ import annotations

import io
import json
import time
import uuid
from dataclasses import replace

import pytest
import redis

from eventgate.report import print_status
from eventgate.shared import keys, slotscripts
from eventgate.shared.errors import IdempotencyKeyReused, PublishError
from eventgate.shared.publisher import Publisher
from eventgate.shared.status import write_record
from eventgate.web.app import create_app
from eventgate.web.ops import StatusFeed
from tests.cluster.slots import (
    channels_by_shard,
    datas,
    interleaved,
    log_of,
    node_at,
    node_port,
)
from tests.servers import LOOPBACK, free_port, wait_for


def test_a_batch_over_every_shard_answers_in_request_order_with_prev_chains(
    redis_cluster, publisher
):
    batch = interleaved(channels_by_shard(publisher, 2))
    drafts = [publisher.draft(channel, {"n": n}) for n, channel in enumerate(batch)]

    ids = publisher.publish_many(drafts)

    assert len(ids) == len(batch)
    for channel in set(batch):
        log = log_of(publisher, channel)
        sent = [n for n, c in enumerate(batch) if c == channel]
        assert [entry_id for entry_id, _ in log] == [ids[n] for n in sent]
        assert [fields["data"] for _, fields in log] == [f'{{"n":{n}}}' for n in sent]
        assert [fields["prev"] for _, fields in log] == ["0-0", log[0][0]]


def test_a_subscriber_on_the_owning_node_hears_the_event_over_sharded_pubsub(
    redis_cluster, publisher
):
    channel = f"cl.live.{uuid.uuid4().hex[:8]}"
    pubsub = node_at(node_port(publisher, channel)).pubsub()
    pubsub.ssubscribe(keys.live_channel(channel))
    wait_for(lambda: pubsub.get_sharded_message(timeout=0.1), 5, "the ssubscribe confirmation")

    event_id = publisher.publish(channel, {"live": True}, "ping")

    message = wait_for(lambda: pubsub.get_sharded_message(timeout=0.1), 5, "the live event")
    assert message["type"] == "smessage"
    assert message["data"] == f'{event_id}\n0-0\nping\n{{"live":true}}'.encode()
    pubsub.close()


def test_a_repeat_under_the_same_key_answers_the_same_ids_and_stores_nothing(
    redis_cluster, publisher
):
    batch = interleaved(channels_by_shard(publisher, 1))
    drafts = [publisher.draft(channel, {"n": n}) for n, channel in enumerate(batch)]
    key = f"batch-{uuid.uuid4().hex}"

    first = publisher.store(drafts, idempotency_key=key)
    again = publisher.store(drafts, idempotency_key=key)

    assert (first.replayed, again.replayed) == (False, True)
    assert again.ids == first.ids
    assert sum(len(log_of(publisher, c)) for c in set(batch)) == len(batch)


def test_a_key_reused_for_other_events_is_refused_with_nothing_stored(redis_cluster, publisher):
    shards = channels_by_shard(publisher, 1)
    batch = interleaved(shards)
    key = f"batch-{uuid.uuid4().hex}"
    publisher.publish_many([publisher.draft(c, {"n": 1}) for c in batch], idempotency_key=key)
    # Other events, on other channels too: no part record could tell, the batch record does.
    other = [*batch, *channels_by_shard(publisher, 1)[next(iter(shards))]]

    with pytest.raises(IdempotencyKeyReused):
        publisher.publish_many([publisher.draft(c, {"n": 2}) for c in other], idempotency_key=key)

    assert sum(len(log_of(publisher, c)) for c in set(other)) == len(batch)


def test_a_key_whose_batch_record_expired_takes_other_events(redis_cluster, publisher):
    batch = interleaved(channels_by_shard(publisher, 1))
    key = f"batch-{uuid.uuid4().hex}"
    publisher.publish_many([publisher.draft(c, {"n": 1}) for c in batch], idempotency_key=key)
    # The batch record expires first (written first): its parts' records are leftovers.
    publisher.client.delete(keys.idempotency_key(key))

    stored = publisher.store([publisher.draft(c, {"n": 2}) for c in batch], idempotency_key=key)

    assert stored.replayed is False
    assert all(len(log_of(publisher, c)) == 4 for c in set(batch))


def test_a_batch_cut_off_after_its_first_part_then_repeated_stores_each_event_once(
    redis_cluster, publisher, monkeypatch
):
    batch = interleaved(channels_by_shard(publisher, 2))
    drafts = [publisher.draft(channel, {"n": n}) for n, channel in enumerate(batch)]
    key = f"batch-{uuid.uuid4().hex}"

    def first_part_then_cut(cluster, script, sha, calls, wait=None):
        slotscripts.run_per_slot(cluster, script, sha, calls[:1], wait)
        raise redis.ConnectionError("the web worker died here")

    with monkeypatch.context() as patched:
        patched.setattr("eventgate.shared.publisher.run_per_slot", first_part_then_cut)
        with pytest.raises(PublishError, match="some of its parts may be stored"):
            publisher.store(drafts, idempotency_key=key)
    first_channel = batch[0]
    assert len(log_of(publisher, first_channel)) == 2  # its part was stored

    stored = publisher.store(drafts, idempotency_key=key)
    again = publisher.store(drafts, idempotency_key=key)

    assert stored.replayed is False and again.replayed is True and again.ids == stored.ids
    for channel in set(batch):
        log = log_of(publisher, channel)
        assert [entry_id for entry_id, _ in log] == [
            stored.ids[n] for n, c in enumerate(batch) if c == channel
        ]


def test_durable_publish_is_confirmed_by_each_parts_replica(redis_cluster):
    durable = Publisher.from_url(redis_cluster.url, durable_replicas=1, redis_timeout_seconds=2.0)
    batch = interleaved(channels_by_shard(durable, 1))

    ids = durable.publish_many([durable.draft(c, {"n": n}) for n, c in enumerate(batch)])

    assert len(ids) == len(batch)
    for channel in set(batch):
        primary = node_at(node_port(durable, channel))
        replica = int(primary.info("replication")["slave0"]["port"])
        # WAIT counted the replica: it holds the events already, no settling wait needed.
        reader = redis.Redis(host=LOOPBACK, port=replica, single_connection_client=True)
        reader.execute_command("READONLY")  # a replica answers reads only after it
        held = reader.xrange(keys.log_key(channel))
        assert [entry_id.decode() for entry_id, _ in held] == [
            ids[n] for n, c in enumerate(batch) if c == channel
        ]


def test_a_node_without_the_script_gets_it_and_the_publish_goes_through(redis_cluster, publisher):
    channel = f"cl.noscript.{uuid.uuid4().hex[:8]}"
    publisher.publish(channel, {"n": 1})
    for node in redis_cluster.primaries():
        redis_cluster.client(node).script_flush()

    publisher.publish(channel, {"n": 2})

    assert datas(publisher, channel) == ['{"n":1}', '{"n":2}']


def test_a_moved_slot_is_followed_and_an_event_is_stored_once(cluster_faults, publisher):
    channel = f"cl.moved.{uuid.uuid4().hex[:8]}"
    publisher.publish(channel, {"n": 1})  # the publisher's slot map is read
    source = node_port(publisher, channel)
    target = next(node for node in cluster_faults.primaries() if node.port != source)
    cluster_faults.migrate_slot(publisher.client.keyslot(keys.log_key(channel)), target)

    publisher.publish(channel, {"n": 2})

    assert node_port(publisher, channel) == target.port
    assert datas(publisher, channel) == ['{"n":1}', '{"n":2}']


def test_a_slot_in_mid_migration_refuses_cleanly_then_publishes_on_its_new_node(
    cluster_faults, publisher
):
    channel = f"cl.ask.{uuid.uuid4().hex[:8]}"
    publisher.publish(channel, {"n": 1})
    source = node_port(publisher, channel)
    target = next(node for node in cluster_faults.primaries() if node.port != source)
    slot = publisher.client.keyslot(keys.log_key(channel))
    migration = cluster_faults.begin_migration(slot, target)
    cluster_faults.move_keys(migration)

    # The source answers ASK, the target TRYAGAIN (the script's live channel is a key that
    # never exists): Redis runs no multi-key command in a slot that is moving.
    with pytest.raises(PublishError):
        publisher.publish(channel, {"n": 2})
    cluster_faults.finish_migration(migration)
    publisher.publish(channel, {"n": 3})  # MOVED, then the new owner

    assert datas(publisher, channel) == ['{"n":1}', '{"n":3}']


def test_the_web_app_publishes_a_batch_and_is_ready_against_the_cluster(
    redis_cluster, cluster_app, publish_key
):
    client = cluster_app.test_client()
    batch = interleaved(channels_by_shard(cluster_app.extensions["eventgate"].publisher, 1))
    auth = {"Authorization": f"Bearer {publish_key}", "Idempotency-Key": uuid.uuid4().hex}

    body = [{"channel": c, "data": n} for n, c in enumerate(batch)]

    first = client.post("/api/events", json=body, headers=auth)
    again = client.post("/api/events", json=body, headers=auth)

    assert first.status_code == 201, first.get_json()
    assert again.status_code == 201 and again.get_json() == first.get_json()
    assert client.get("/readyz").status_code == 200


def test_against_a_cluster_nobody_serves_readyz_and_publish_answer_503_json(cluster_app):
    down = f"redis+cluster://{LOOPBACK}:{free_port()}"
    config = replace(cluster_app.extensions["eventgate"].config, redis_url=down)
    client = create_app(config).test_client()
    key = config.publish_keys[0]

    started = time.monotonic()
    ready = client.get("/readyz")
    published = client.post("/api/events", json={"channel": "cl.down", "data": 1},
                             headers={"Authorization": f"Bearer {key}"})

    assert time.monotonic() - started < 3.0
    assert ready.status_code == 503 and ready.get_json()["error"] == "not_ready"
    assert published.status_code == 503 and published.get_json()["error"] == "publish_failed"


def test_the_ops_status_event_and_eventgate_status_work_against_the_cluster(
    redis_cluster, cluster_app, publisher
):
    gate = cluster_app.extensions["eventgate"]
    gate.client.delete(keys.STATUS_FEED_LOCK)
    write_record(gate.client, "cl-host:1", {"pid": 1, "streams": 4}, ttl_seconds=10)
    channels = interleaved(channels_by_shard(publisher, 1))
    publisher.publish_many([publisher.draft(c, {"n": n}) for n, c in enumerate(channels)])

    event_id = StatusFeed(gate).publish_once()
    out = io.StringIO()
    print_status(gate.client, out, as_json=True, log_limit=100_000)

    assert event_id is not None
    status = json.loads(out.getvalue())
    assert status["totals"]["streams"] >= 4
    assert all(status["logs"]["lengths"][c] == 2 for c in channels)
    # Every primary's memory, summed: more than any one node uses.
    one_node = max(redis_cluster.client(node).info("memory")["used_memory"]
                   for node in redis_cluster.primaries())
    assert status["redis"]["used_memory_bytes"] > one_node
    gate.client.hdel(keys.WORKERS, "cl-host:1")


def test_a_killed_primary_reads_not_ready_then_its_replica_takes_its_channels(
    cluster_faults, cluster_app, publisher
):
    client = cluster_app.test_client()
    victim, channels = next(iter(channels_by_shard(publisher, 1).items()))
    channel = channels[0]
    publisher.publish(channel, {"n": 1})
    cluster_faults.kill_primary(next(n for n in cluster_faults.nodes if n.port == victim))

    seen: list[str] = []
    wait_for(lambda: _ready_again(client, seen), 30, "/readyz: 503, then 200 after the promotion")
    wait_for(lambda: publisher.publish(channel, {"n": 2}), 10, "a publish on the new primary")

    assert all("its slots" in m or "slots of the Redis Cluster" in m for m in seen), seen
    assert node_port(publisher, channel) != victim
    assert datas(publisher, channel)[-1] == '{"n":2}'


def _ready_again(client, seen: list[str]) -> bool:
    """Whether /readyz answers 200 after a 503 (each 503's sentence goes to ``seen``)."""
    response = client.get("/readyz")
    if response.status_code == 503:
        seen.append(response.get_json()["message"])
    return response.status_code == 200 and bool(seen)


def test_outbox_rows_over_every_shard_are_stored_once_in_order(redis_cluster, publisher):
    batch = interleaved(channels_by_shard(publisher, 2))
    rows = [(publisher.draft(channel, {"n": n}), f"outbox.{uuid.uuid4().hex}")
            for n, channel in enumerate(batch)]

    first = publisher.store_rows(rows[: len(rows) // 2])
    ids = publisher.store_rows(rows)

    assert ids[: len(first)] == first
    for channel in set(batch):
        log = log_of(publisher, channel)
        sent = [n for n, c in enumerate(batch) if c == channel]
        assert [entry_id for entry_id, _ in log] == [ids[n] for n in sent]
        assert [fields["data"] for _, fields in log] == [f'{{"n":{n}}}' for n in sent]
