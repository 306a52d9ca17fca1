"""``eventgate migrate`` (eventgate/migration.py) between real redis-servers: every log copied
with its ids, fields, last generated id and expiry; 0.2's key form moved to the current one;
resumable; a destination that holds other events is refused; cursors and chains stay valid."""

from __future__ import annotations

import redis

from eventgate.cli import EXIT_CONFLICT, main
from eventgate.shared import keys
from eventgate.shared.events import Event, read_from
from eventgate.shared.publisher import Publisher

HOUR_MS = 3_600_000


def run_migrate(capsys, source, destination, *options: str) -> tuple[int, str, str]:
    """The command in this process (a real process costs ~0.5 s; ``test_cli`` covers that)."""
    code = main(["migrate", "--from", source.url, "--to", destination.url, *options])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def old_form_log(client: redis.Redis, channel: str, count: int, *, ttl_ms: int) -> list:
    """A log as eventgate 0.2 stored it (``eventgate:{<channel>}:log``), chained by ``prev``."""
    key = f"eventgate:{{{channel}}}:log"
    prev = "0-0"
    for n in range(count):
        prev = client.xadd(key, {"type": "tick", "data": str(n), "prev": prev},
                           id=f"{1_700_000_000_000 + n}-{n % 3}").decode()
    client.pexpire(key, ttl_ms)
    return client.xrange(key)


def log_of(client: redis.Redis, channel: str) -> list:
    return client.xrange(keys.log_key(channel))


def test_old_key_form_moves_to_another_server_with_ids_fields_expiry_and_last_id(
    make_redis_server, capsys, channel
):
    source, destination = make_redis_server(), make_redis_server()
    src, dst = source.client(), destination.client()
    old = old_form_log(src, f"{channel}.old", 1100, ttl_ms=HOUR_MS)  # three pages
    publisher = Publisher.from_url(source.url, retention_seconds=3600)
    for n in range(5):
        publisher.publish(f"{channel}.new", {"n": n}, "count")
    emptied = publisher.publish(f"{channel}.emptied", 1)
    src.xtrim(keys.log_key(f"{channel}.emptied"), maxlen=0, approximate=False)
    src.set(keys.idempotency_key("order-7"), "fingerprint\n1-0", ex=600)
    src.set(keys.partition_idempotency_key("order-8", 5), "fingerprint\n2-0", ex=600)  # Cluster's

    code, out, _ = run_migrate(capsys, source, destination, "--dry-run")
    assert code == 0
    assert out.startswith("dry run: 3 logs, 1105 events") and "2 idempotency records" in out
    assert dst.dbsize() == 0

    code, out, err = run_migrate(capsys, source, destination)
    assert code == 0, err
    assert "copied 1105 events" in out and "0 conflicts" in out

    assert log_of(dst, f"{channel}.old") == old  # ids and type, data, prev, all of them
    assert not dst.exists(f"eventgate:{{{channel}.old}}:log")
    assert log_of(dst, f"{channel}.new") == log_of(src, f"{channel}.new")
    for name, key in (
        (f"{channel}.old", f"eventgate:{{{channel}.old}}:log"),
        (f"{channel}.new", keys.log_key(f"{channel}.new")),
        (f"{channel}.emptied", keys.log_key(f"{channel}.emptied")),
    ):
        info = dst.xinfo_stream(keys.log_key(name))
        assert info["last-generated-id"] == src.xinfo_stream(key)["last-generated-id"]
        assert src.pttl(key) - 60_000 < dst.pttl(keys.log_key(name)) <= src.pttl(key) + 1_000
    assert dst.xlen(keys.log_key(f"{channel}.emptied")) == 0
    assert dst.xinfo_stream(keys.log_key(f"{channel}.emptied"))["last-generated-id"] == (
        emptied.encode()
    )
    assert dst.get(keys.idempotency_key("order-7")) == b"fingerprint\n1-0"
    assert 500 < dst.ttl(keys.idempotency_key("order-7")) <= 600
    assert dst.get(keys.partition_idempotency_key("order-8", 5)) == b"fingerprint\n2-0"

    code, out, _ = run_migrate(capsys, source, destination)
    assert code == 0
    assert out.startswith("nothing to copy") and "1105 events checked" in out
    assert log_of(dst, f"{channel}.old") == old


def test_in_place_moves_the_old_key_form_and_leaves_the_source_keys(
    make_redis_server, capsys, channel
):
    server = make_redis_server()
    client = server.client()
    old = old_form_log(client, channel, 10, ttl_ms=HOUR_MS)

    code, out, err = run_migrate(capsys, server, server)

    assert code == 0, err
    assert "copied 10 events" in out
    assert log_of(client, channel) == old
    assert client.exists(f"eventgate:{{{channel}}}:log")  # only read: it expires on its own
    code, out, _ = run_migrate(capsys, server, server)
    assert code == 0 and out.startswith("nothing to copy")


def test_a_partial_copy_resumes_and_a_second_run_picks_up_stragglers(
    make_redis_server, capsys, channel
):
    source, destination = make_redis_server(), make_redis_server()
    src, dst = source.client(), destination.client()
    publisher = Publisher.from_url(source.url)
    publisher.publish_many([publisher.draft(channel, n) for n in range(700)])
    events = log_of(src, channel)
    for entry_id, fields in events[:321]:  # a run stopped part-way
        dst.xadd(keys.log_key(channel), fields, id=entry_id)

    code, out, err = run_migrate(capsys, source, destination)
    assert code == 0, err
    assert "copied 379 events" in out and "321 events already there" in out
    assert log_of(dst, channel) == events

    publisher.publish_many([publisher.draft(channel, n) for n in range(3)])  # stragglers
    code, out, _ = run_migrate(capsys, source, destination, "--no-idempotency-records")
    assert code == 0
    assert "copied 3 events" in out and "700 events already there" in out
    assert log_of(dst, channel) == log_of(src, channel)


def test_a_destination_holding_other_events_is_refused_and_left_as_it_is(
    make_redis_server, capsys, channel
):
    source, destination = make_redis_server(), make_redis_server()
    src, dst = source.client(), destination.client()
    publisher = Publisher.from_url(source.url)
    ids = [publisher.publish(channel, n) for n in range(4)]
    publisher.publish(f"{channel}.other", "fine")
    for entry_id, fields in log_of(src, channel)[:2]:
        dst.xadd(keys.log_key(channel), fields, id=entry_id)
    dst.xadd(keys.log_key(channel), {"type": "message", "data": '"not the same"',
                                     "prev": ids[1]}, id=ids[2])
    before = log_of(dst, channel)

    code, out, err = run_migrate(capsys, source, destination)

    assert code == EXIT_CONFLICT
    assert f"eventgate: channel {channel}: event {ids[2]} differs" in err
    assert "1 channels not copied" in err and "Traceback" not in err
    assert log_of(dst, channel) == before  # nothing overwritten, nothing appended
    assert log_of(dst, f"{channel}.other") == log_of(src, f"{channel}.other")
    assert "1 conflicts" in out


def test_events_the_destination_took_make_a_straggler_a_conflict(
    make_redis_server, capsys, channel
):
    source, destination = make_redis_server(), make_redis_server()
    on_source = Publisher.from_url(source.url)
    agreed = on_source.publish_many([on_source.draft(f"{channel}.{n}", 1) for n in (1, 2)])
    assert run_migrate(capsys, source, destination)[0] == 0
    # After the copy, each channel takes an event on either side, a millisecond apart (written
    # with explicit ids: two publishes in one millisecond could share an id): on .1 the source's
    # straggler comes first, on .2 the destination's own event.
    first, second = (f"{int(agreed[1].split('-')[0]) + ms}-0" for ms in (1, 2))
    for name, prev, on_source_id, on_destination_id in (
        (f"{channel}.1", agreed[0], first, second), (f"{channel}.2", agreed[1], second, first),
    ):
        source.client().xadd(keys.log_key(name), {"type": "m", "data": "1", "prev": prev},
                             id=on_source_id)
        destination.client().xadd(keys.log_key(name), {"type": "m", "data": "2", "prev": prev},
                                  id=on_destination_id)

    code, _, err = run_migrate(capsys, source, destination)

    assert code == EXIT_CONFLICT and "2 channels not copied" in err
    assert f"the source's event {first} is missing from the destination" in err
    assert f"the destination holds an event the source does not ({first})" in err


def test_after_migration_the_next_publish_chains_and_cursors_resume_exactly(
    make_redis_server, capsys, channel
):
    source, destination = make_redis_server(), make_redis_server()
    on_source = Publisher.from_url(source.url)
    ids = [on_source.publish(channel, n) for n in range(30)]
    emptied = on_source.publish(f"{channel}.emptied", "gone")
    source.client().xtrim(keys.log_key(f"{channel}.emptied"), maxlen=0, approximate=False)
    assert run_migrate(capsys, source, destination)[0] == 0

    on_destination = Publisher.from_url(destination.url)
    after = on_destination.publish(channel, "after")
    dst = destination.client()
    newest = Event.from_entry(channel, *log_of(dst, channel)[-1])
    assert (newest.id, newest.prev) == (after, ids[-1])
    first = on_destination.publish(f"{channel}.emptied", "again")
    assert Event.from_entry("", *log_of(dst, f"{channel}.emptied")[0]).prev == emptied
    assert first != emptied

    page = read_from(dst, channel, ids[11])  # a browser's cursor from before the switch
    assert page.after == ids[11]
    assert [Event.from_entry(channel, *entry).id for entry in page.entries] == [*ids[12:], after]


def test_one_redis_to_a_cluster_and_back_keeps_every_log_on_every_shard(
    make_redis_server, redis_cluster, capsys, channel
):
    source = make_redis_server()
    src = source.client()
    on_source = Publisher.from_url(source.url, retention_seconds=3600)
    names = [f"{channel}.{n}" for n in range(24)]  # spread over the three shards
    on_source.publish_many([on_source.draft(name, n) for n in range(3) for name in names])
    long = f"{channel}.long"  # more than a page
    ids = on_source.publish_many([on_source.draft(long, n) for n in range(600)])
    emptied = on_source.publish(f"{channel}.emptied", "gone")
    src.xtrim(keys.log_key(f"{channel}.emptied"), maxlen=0, approximate=False)
    old = old_form_log(src, f"{channel}.old", 5, ttl_ms=HOUR_MS)
    copied = [*names, long, f"{channel}.emptied"]
    record = keys.idempotency_key(f"{channel}-order")
    src.set(record, "fingerprint\n1-0", ex=600)

    code, out, err = run_migrate(capsys, source, redis_cluster)

    assert code == 0, err
    assert f"copied {3 * len(names) + 600 + 5} events" in out
    # a Cluster keeps a batch's ids per partition, and an id does not say its channel's
    assert "Idempotency records not copied" in out
    cluster = redis_cluster.cluster_client(decode_responses=False)
    assert not cluster.exists(record)
    for name in copied:
        assert cluster.xrange(keys.log_key(name)) == log_of(src, name)
        assert (cluster.xinfo_stream(keys.log_key(name))["last-generated-id"]
                == src.xinfo_stream(keys.log_key(name))["last-generated-id"])
        assert 0 < src.pttl(keys.log_key(name)) - cluster.pttl(keys.log_key(name)) + 1000 < 60_000
    assert cluster.xrange(keys.log_key(f"{channel}.old")) == old
    shards = {redis_cluster.address(redis_cluster.primary_of_slot(
        redis_cluster.slot_of(keys.log_key(name)))) for name in names}
    assert len(shards) == 3
    code, out, _ = run_migrate(capsys, source, redis_cluster)
    assert code == 0 and out.startswith("nothing to copy")

    on_cluster = Publisher.from_url(redis_cluster.url)
    after = on_cluster.publish(long, "after")
    assert Event.from_entry(long, *cluster.xrange(keys.log_key(long))[-1]).prev == ids[-1]
    again = on_cluster.publish(f"{channel}.emptied", "again")

    back = make_redis_server()  # every shard is read: the logs of all three arrive
    code, _, err = run_migrate(capsys, redis_cluster, back)
    assert code == 0, err
    dst = back.client()
    for name in [*copied, f"{channel}.old"]:
        assert log_of(dst, name) == cluster.xrange(keys.log_key(name))
    assert Event.from_entry("", *log_of(dst, f"{channel}.emptied")[0]).prev == emptied
    assert log_of(dst, f"{channel}.emptied")[0][0].decode() == again
    page = read_from(dst, long, ids[199])  # a cursor from the first Redis, on the third
    assert page.after == ids[199]
    assert [Event.from_entry(long, *entry).id for entry in page.entries] == [*ids[200:], after]


def test_a_channel_with_logs_of_both_key_forms_gets_the_old_history_first(
    make_redis_server, capsys, channel
):
    source, destination = make_redis_server(), make_redis_server()
    src = source.client()
    old = old_form_log(src, channel, 3, ttl_ms=HOUR_MS)  # 0.2's history...
    Publisher.from_url(source.url).publish(channel, "new")  # ...and a log started without it
    new = log_of(src, channel)

    code, out, err = run_migrate(capsys, source, destination)

    assert code == 0, err
    assert log_of(destination.client(), channel) == old + new  # its first prev says 0-0
    code, out, err = run_migrate(capsys, source, source)  # in place: 0.2's cannot go below
    assert code == EXIT_CONFLICT
    first = old[0][0].decode()
    assert f"eventgate: channel {channel}: the source's event {first} is missing" in err
    assert log_of(src, channel) == new


def test_progress_goes_to_stderr_and_failures_are_one_line(
    make_redis_server, capsys, channel
):
    source, destination = make_redis_server(), make_redis_server()
    Publisher.from_url(source.url).publish(channel, 1)

    code, _, err = run_migrate(capsys, source, destination, "--progress")
    assert code == 0
    assert "migrate: 1 logs, 1 events copied, 0 already there, 0 conflicts" in err

    destination.stop()
    code, out, err = run_migrate(capsys, source, destination)
    assert (code, out) == (1, "")
    assert err == "eventgate: --to: Redis is not answering (ConnectionError).\n"
    code = main(["migrate", "--from", "http://example.org", "--to", source.url])
    assert code == 2
    assert capsys.readouterr().err.startswith("eventgate: --from: the Redis URL must start with")
