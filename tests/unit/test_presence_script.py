"""The presence script on a real Redis: one run per partition carries every channel of it, each
channel's leases and joins kept apart; runs stay bounded in size."""

from __future__ import annotations

import json
from dataclasses import replace

from eventgate.shared import keys
from eventgate.shared.presence import PresenceScript, summarize


def same_partition(prefix: str, count: int) -> list[str]:
    names = (f"{prefix}.{n}" for n in range(100_000))
    first = next(names)
    return [first, *[n for n in names if keys.partition(n) == keys.partition(first)][:count - 1]]


def test_one_run_per_partition_keeps_channels_apart(make_config, redis_server, channel):
    config = replace(make_config(), presence_channels=(f"{channel}.*",))
    client = redis_server.client()
    script = PresenceScript(client, config)
    script.load()
    channels = same_partition(channel, 3)
    assert len(script._parts([(c, ("+", f"user-{i}|1.a")) for i, c in enumerate(channels)])) == 1
    pipe = client.pipeline(transaction=False)
    script.queue(pipe, [(c, ("+", f"user-{i}|1.a", "+", "|1.b")) for i, c in enumerate(channels)])
    pipe.execute()
    for i, name in enumerate(channels):
        found = summarize(name, client.zrange(keys.presence_key(name), 0, -1))
        assert (found.streams, [h.subject for h in found.holders]) == (2, [f"user-{i}"])
        joins = [json.loads(f[b"data"]) for _, f in client.xrange(keys.log_key(name))]
        assert joins == [{"channel": name, "subject": f"user-{i}"}]


def test_runs_are_bounded_in_size(make_config, redis_server, channel):
    script = PresenceScript(redis_server.client(), make_config())
    ops = ("+", "user|1.a") * 600  # 1200 entries: two such channels exceed one run's share
    runs = script._parts([(channel, ops), (channel, ops), (channel, ())])
    assert [len(args) - 4 for _, args in runs] == [1203, 1203 + 3]
