"""Publisher against a real redis-server: store + publish in one atomic script, prev chains,
retention, refusals that never reach Redis, and a fast PublishError when Redis is away."""

from __future__ import annotations

import os
import socket
import time

import pytest

from eventgate.shared import keys
from eventgate.shared.config import Config
from eventgate.shared.errors import InvalidEvent, InvalidName, PublishError
from eventgate.shared.events import START, Event
from eventgate.shared.publisher import Publisher, PublishSettings
from eventgate.shared.redisconn import connect
from tests.servers import free_port, wait_for


def log_entries(inspector, channel: str) -> list[Event]:
    return [Event.from_entry(channel, i, f) for i, f in inspector.xrange(keys.log_key(channel))]


def command_calls(inspector) -> dict[str, int]:
    stats = inspector.info("commandstats")
    return {
        name: stats.get(f"cmdstat_{name}", {}).get("calls", 0)
        for name in ("evalsha", "eval", "xadd", "publish", "xtrim")
    }


# --- store ---------------------------------------------------------------------------------------


def test_publish_returns_an_id_in_the_log(publisher, inspector, channel):
    event_id = publisher.publish(channel, {"a": 1}, "order.updated")
    entries = inspector.xrange(keys.log_key(channel))
    assert [i.decode() for i, _ in entries] == [event_id]
    assert entries[0][1] == {b"type": b"order.updated", b"data": b'{"a":1}', b"prev": b"0-0"}


def test_default_type_and_data(publisher, inspector, channel):
    publisher.publish(channel)
    [event] = log_entries(inspector, channel)
    assert (event.type, event.data) == ("message", "null")


def test_prev_chains(publisher, inspector, channel):
    ids = [publisher.publish(channel, n) for n in range(5)]
    events = log_entries(inspector, channel)
    assert [e.id for e in events] == ids
    assert [e.prev for e in events] == [START, *ids[:-1]]
    assert [e.data for e in events] == ["0", "1", "2", "3", "4"]


def test_channels_have_separate_logs_and_chains(publisher, inspector, channel):
    other = channel + ".other"
    a1 = publisher.publish(channel, 1)
    b1 = publisher.publish(other, 2)
    a2 = publisher.publish(channel, 3)
    assert [e.prev for e in log_entries(inspector, channel)] == [START, a1]
    assert [(e.id, e.prev) for e in log_entries(inspector, other)] == [(b1, START)]
    assert [e.id for e in log_entries(inspector, channel)] == [a1, a2]


# --- live ----------------------------------------------------------------------------------------


def test_subscriber_receives_payloads_in_order_after_they_are_stored(
    publisher, inspector, subscribe, channel
):
    subscription = subscribe(channel)
    data = [{"n": n, "text": "é\n\r\u2028"} for n in range(20)]
    ids = [publisher.publish(channel, d, "t") for d in data]
    received = subscription.messages(len(ids))
    stored = log_entries(inspector, channel)
    assert [payload for _, payload in received] == [e.to_payload() for e in stored]
    assert [Event.from_payload(channel, p).id for _, p in received] == ids


def test_every_live_message_is_already_in_the_log(publisher, inspector, subscribe, channel):
    # Read each message as it arrives and look it up in the log right then: store + publish is
    # one atomic script, so the log can never be behind the live feed.
    subscription = subscribe(channel)
    for n in range(20):
        event_id = publisher.publish(channel, n)
        [(_, payload)] = subscription.messages(1)
        live = Event.from_payload(channel, payload)
        assert live.id == event_id
        assert inspector.xrange(keys.log_key(channel), live.id, live.id), "published before stored"


def test_publish_many_keeps_order_across_channels_in_one_script_run(
    publisher, inspector, subscribe, channel
):
    other = channel + ".b"
    publisher.publish(channel, "warm-up")  # loads the script, so the batch below is one EVALSHA
    subscription = subscribe(channel, other)
    drafts = [
        publisher.draft(channel, 1, "a"),
        publisher.draft(other, 2, "b"),
        publisher.draft(channel, 3, "c"),
        publisher.draft(other, 4, "d"),
    ]
    before = command_calls(inspector)
    ids = publisher.publish_many(drafts)
    after = command_calls(inspector)
    assert after["evalsha"] + after["eval"] - before["evalsha"] - before["eval"] == 1
    assert after["xadd"] - before["xadd"] == 4
    assert after["publish"] - before["publish"] == 4

    received = [(ch, Event.from_payload(ch, p)) for ch, p in subscription.messages(4)]
    assert [(ch, e.id, e.type, e.data) for ch, e in received] == [
        (channel, ids[0], "a", "1"),
        (other, ids[1], "b", "2"),
        (channel, ids[2], "c", "3"),
        (other, ids[3], "d", "4"),
    ]
    chan_events = log_entries(inspector, channel)
    assert [e.id for e in chan_events][-2:] == [ids[0], ids[2]]
    assert chan_events[-1].prev == ids[0]  # the chain runs through the batch
    assert [e.prev for e in log_entries(inspector, other)] == [START, ids[1]]


def test_a_batch_chains_prev_through_repeated_channels_looking_each_log_up_once(
    publisher, inspector, channel
):
    other, fresh = channel + ".b", channel + ".c"
    before_batch = publisher.publish(channel, "already there")
    publisher.publish(other, "warm-up")
    inspector.xtrim(keys.log_key(other), maxlen=0, approximate=False)  # exists, but empty
    last_of_other = inspector.xinfo_stream(keys.log_key(other))["last-generated-id"].decode()
    order = [channel, other, fresh, channel, channel, fresh, other, channel]
    lookups = inspector.info("commandstats").get("cmdstat_xrevrange", {}).get("calls", 0)
    ids = publisher.publish_many([publisher.draft(ch, n) for n, ch in enumerate(order)])
    after = inspector.info("commandstats")["cmdstat_xrevrange"]["calls"]
    assert after - lookups == 3  # one per distinct log, not one per event
    expected_prev = {channel: before_batch, other: last_of_other, fresh: START}
    for ch, event_id in zip(order, ids, strict=True):
        [event] = [e for e in log_entries(inspector, ch) if e.id == event_id]
        assert event.prev == expected_prev[ch]
        expected_prev[ch] = event_id


def test_publish_many_of_nothing(publisher):
    assert publisher.publish_many([]) == []


# --- building one -------------------------------------------------------------------------------


def pool_settings(publisher: Publisher) -> dict:
    """What redisconn.connect chooses for the publisher's client."""
    pool = publisher.client.connection_pool
    chosen = ("host", "port", "db", "socket_timeout", "socket_connect_timeout",
              "socket_keepalive", "health_check_interval", "retry_on_timeout")
    return {"pool": type(pool).__name__, "max_connections": pool.max_connections,
            "retries": pool.connection_kwargs["retry"].get_retries(),
            **{name: pool.connection_kwargs.get(name) for name in chosen}}


def test_from_url_needs_no_setting_and_no_secret(redis_server, inspector, channel, built,
                                                 monkeypatch, tmp_path):
    # A job worker: no EVENTGATE_* at all, and no var/eventgate.env to fall back on.
    for name in [n for n in os.environ if n.startswith("EVENTGATE_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    publisher = Publisher.from_url(redis_server.url)
    built(publisher)

    event_id = publisher.publish(channel, {"a": 1}, "order.updated")

    assert [e.id for e in log_entries(inspector, channel)] == [event_id]
    # The same Redis client settings as the apps' (redisconn.connect with Config's defaults).
    defaults = Config(secret_keys=("k",), publish_keys=("p",), redis_url=redis_server.url)
    assert pool_settings(publisher) == pool_settings(Publisher(connect(defaults), defaults))


def test_from_url_takes_overrides_of_the_publishing_settings(redis_server, channel, built):
    publisher = Publisher.from_url(
        redis_server.url, max_event_bytes=10, redis_timeout_seconds=0.2, redis_pool_size=4
    )
    built(publisher)

    with pytest.raises(InvalidEvent):
        publisher.publish(channel, "123456789")
    assert pool_settings(publisher)["socket_timeout"] == 0.2
    assert pool_settings(publisher)["max_connections"] == 4
    with pytest.raises(TypeError, match="secret_keys"):
        Publisher.from_url(redis_server.url, secret_keys=("not a publishing setting",))


def test_from_config_publishes_with_the_configs_redis_and_limits(make_config, inspector,
                                                                 channel, built):
    publisher = Publisher.from_config(make_config(max_batch_events=2, redis_pool_size=6))
    built(publisher)

    with pytest.raises(InvalidEvent):
        publisher.publish_many([publisher.draft(channel, n) for n in range(3)])
    event_id = publisher.publish(channel, 1)

    assert [e.id for e in log_entries(inspector, channel)] == [event_id]
    assert pool_settings(publisher)["max_connections"] == 6


def test_publish_settings_keep_the_redis_url_out_of_repr():
    assert "hunter2" not in repr(PublishSettings("redis://:hunter2@127.0.0.1:6379/0"))


# --- retention -----------------------------------------------------------------------------------


def wait_until_older(inspector, event_id: str, seconds: float) -> None:
    """Until ``event_id`` is more than ``seconds`` old by Redis's clock, the one the publish
    script computes its retention cut-off with (TIME): a publish from then on trims it."""
    stored_ms = int(event_id.partition("-")[0])

    def older() -> bool:
        now_seconds, now_micros = inspector.time()
        return now_seconds * 1000 + now_micros // 1000 > stored_ms + seconds * 1000

    wait_for(older, seconds + 5, f"{event_id} to be older than {seconds} s")


def test_retention_by_count(make_publisher, inspector, channel):
    publisher = make_publisher(retention_count=100)
    for n in range(1000):
        publisher.publish(channel, n)
    length = inspector.xlen(keys.log_key(channel))
    # MAXLEN ~ trims whole stream nodes (up to 100 entries each): between 100 and ~200 remain
    assert 100 <= length <= 200
    [(last_id, fields)] = inspector.xrevrange(keys.log_key(channel), count=1)
    assert Event.from_entry(channel, last_id, fields).data == "999"  # the newest events stay


def test_retention_by_age(make_publisher, inspector, channel):
    publisher = make_publisher(retention_seconds=1)
    old = [publisher.publish(channel, n) for n in range(3)]
    wait_until_older(inspector, old[-1], 1)
    new = publisher.publish(channel, "new")
    remaining = [e.id for e in log_entries(inspector, channel)]
    assert new in remaining
    assert not set(old) & set(remaining), (
        f"events older than retention_seconds are still in the log: {remaining}"
    )


def test_retention_by_age_in_a_batch(make_publisher, inspector, channel):
    publisher = make_publisher(retention_seconds=1)
    # Events 5 s old in a log that has not expired (written by hand: a log left by a publish
    # with a longer age limit). Published now, they would expire with their log after 1 s.
    now_seconds, now_micros = inspector.time()
    past_ms = now_seconds * 1000 + now_micros // 1000 - 5000
    old = [f"{past_ms}-{n}" for n in range(3)]
    for n, event_id in enumerate(old):
        inspector.xadd(keys.log_key(channel), {"type": "message", "data": str(n),
                                               "prev": old[n - 1] if n else START}, id=event_id)
    ids = publisher.publish_many([publisher.draft(ch, n) for n, ch in enumerate([channel] * 3)])
    assert [e.id for e in log_entries(inspector, channel)] == ids
    assert log_entries(inspector, channel)[0].prev == old[-1]


def test_a_log_expires_after_the_age_limit_from_its_newest_event(
    make_publisher, inspector, channel
):
    publisher = make_publisher(retention_seconds=30)
    log = keys.log_key(channel)
    publisher.publish(channel, 1)
    assert 32_000 < inspector.pttl(log) <= 33_000  # the age limit and a tenth
    inspector.pexpire(log, 31_000)
    publisher.publish(channel, 2)
    assert inspector.pttl(log) <= 31_000  # still over the age limit: left as it is
    inspector.pexpire(log, 1000)
    publisher.publish_many([publisher.draft(channel, 3), publisher.draft(channel + ".b", 4)])
    assert 32_000 < inspector.pttl(log) <= 33_000  # pushed back
    assert 32_000 < inspector.pttl(keys.log_key(channel + ".b")) <= 33_000
    unlimited = make_publisher(retention_seconds=0)
    unlimited.publish(channel + ".c", 4)
    assert inspector.pttl(keys.log_key(channel + ".c")) == -1  # no age limit: no expiry


def test_prev_after_the_log_was_trimmed_to_empty(publisher, inspector, channel):
    publisher.publish(channel, 1)
    last = publisher.publish(channel, 2)
    inspector.xtrim(keys.log_key(channel), maxlen=0, approximate=False)
    assert inspector.xlen(keys.log_key(channel)) == 0
    info = inspector.xinfo_stream(keys.log_key(channel))
    assert info["last-generated-id"].decode() == last
    publisher.publish(channel, 3)
    [event] = log_entries(inspector, channel)
    assert event.prev == last  # not "0-0": a reader can tell events were lost


def test_prev_is_start_when_the_log_is_gone(publisher, inspector, channel):
    publisher.publish(channel, 1)
    inspector.delete(keys.log_key(channel))
    publisher.publish(channel, 2)
    [event] = log_entries(inspector, channel)
    assert event.prev == START


# --- refusals ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (("bad channel", 1, "message"), InvalidName),
        (("../x", 1, "message"), InvalidName),
        (("*", 1, "message"), InvalidName),
        (("", 1, "message"), InvalidName),
        ((None, 1, "message"), InvalidName),
        (("{CH}", 1, "x\r\nid: 1"), InvalidName),
        (("{CH}", 1, "x\revent: admin"), InvalidName),
        (("{CH}", 1, "eventgate.loss"), InvalidName),
        (("{CH}", 1, ""), InvalidName),
        (("{CH}", 1, None), InvalidName),
        (("{CH}", float("nan"), "message"), InvalidEvent),
        (("{CH}", {1, 2}, "message"), InvalidEvent),
        (("{CH}", b"bytes", "message"), InvalidEvent),
        (("{CH}", "x" * 70_000, "message"), InvalidEvent),
    ],
    ids=repr,
)
def test_invalid_input_never_reaches_redis(publisher, inspector, channel, args, error):
    publisher.publish(channel, "warm-up")
    args = tuple(channel if a == "{CH}" else a for a in args)
    before = command_calls(inspector)
    with pytest.raises(error):
        publisher.publish(*args)
    assert command_calls(inspector) == before
    assert inspector.xlen(keys.log_key(channel)) == 1


def test_batch_with_one_invalid_event_publishes_nothing(publisher, inspector, channel):
    publisher.publish(channel, "warm-up")
    before = command_calls(inspector)
    with pytest.raises(InvalidName):
        publisher.publish_many(
            [publisher.draft(channel, 1), publisher.draft(channel, 2, "bad type")]
        )
    assert command_calls(inspector) == before
    assert inspector.xlen(keys.log_key(channel)) == 1


def test_event_size_limit(make_publisher, inspector, channel):
    publisher = make_publisher(max_event_bytes=10)
    publisher.publish(channel, "12345678")  # 10 bytes with the quotes
    with pytest.raises(InvalidEvent):
        publisher.publish(channel, "123456789")
    assert inspector.xlen(keys.log_key(channel)) == 1


def test_batch_above_max_batch_events(make_publisher, inspector, channel):
    publisher = make_publisher(max_batch_events=3)
    drafts = [publisher.draft(channel, n) for n in range(4)]
    with pytest.raises(InvalidEvent):
        publisher.publish_many(drafts)
    assert inspector.exists(keys.log_key(channel)) == 0
    assert len(publisher.publish_many(drafts[:3])) == 3


def test_redis_unreachable_is_a_fast_publish_error(make_publisher, channel):
    publisher = make_publisher(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    started = time.monotonic()
    with pytest.raises(PublishError) as caught:
        publisher.publish(channel, {"a": 1})
    assert time.monotonic() - started < 1.0
    assert caught.value.code == "publish_failed"


def test_redis_unresponsive_is_a_bounded_publish_error(make_publisher, channel):
    # A port that accepts connections but never answers (listen backlog, no accept): the
    # publisher must give up within its socket timeouts, not hang a blocking web worker.
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        port = server.getsockname()[1]
        publisher = make_publisher(
            redis_url=f"redis://127.0.0.1:{port}/0",
            redis_timeout_seconds=0.2,
            redis_connect_timeout_seconds=0.2,
        )
        started = time.monotonic()
        with pytest.raises(PublishError):
            publisher.publish(channel, 1)
        assert time.monotonic() - started < 2.0
