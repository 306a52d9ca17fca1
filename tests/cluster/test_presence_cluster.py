"""Presence on a Redis Cluster: the leases, the join and the leave live in the channel's slot
(its partition's hash tag), the keeper's pipelines and the API's read reach it there."""

from __future__ import annotations

import json
from dataclasses import replace

from eventgate.shared import keys
from eventgate.web.app import create_app
from tests.clients import StreamClient, stream_path
from tests.servers import wait_for
from tests.stream.pool import StreamPool, pool_settings


def test_presence_and_join_leave_on_a_cluster(redis_cluster, cluster_app, publisher, tokens,
                                              secret_keys, publish_key, tmp_path):
    env = pool_settings(redis_cluster.url, secret_keys, publish_key, tmp_path / "var",
                        presence_channels="room.*", presence_grace_seconds="0.5")
    pool = StreamPool(tmp_path, env).start()
    config = replace(cluster_app.extensions["eventgate"].config, presence_channels=("room.*",),
                     presence_grace_seconds=0.5)
    api = create_app(config).test_client()
    auth = {"Authorization": f"Bearer {publish_key}"}
    channels = [f"room.cluster.{n}" for n in range(4)]  # spread over partitions, so shards
    token = tokens.issue(channels, subject="gina").token
    stream = StreamClient(pool.port, stream_path(token, tuple(channels))).start().wait_open()
    cluster = publisher.client

    def announced(channel: str) -> list[tuple[str, str]]:
        return [(f[b"type"].decode(), json.loads(f[b"data"])["subject"])
                for _, f in cluster.xrange(keys.log_key(channel))]

    def present(channel: str) -> object:
        return api.get(f"/api/channels/{channel}/presence", headers=auth).get_json()

    try:
        for channel in channels:
            wait_for(lambda c=channel: present(c)["subjects"][:1] == [
                {"subject": "gina", "streams": 1, "since": present(c)["subjects"][0]["since"]}
            ], 5, f"gina on {channel}")
            wait_for(lambda c=channel: announced(c) == [("eventgate.join", "gina")], 5,
                     f"gina's join on {channel}")
        stream.close()
        for channel in channels:
            wait_for(lambda c=channel: announced(c)[-1:] == [("eventgate.leave", "gina")], 5,
                     f"gina's leave on {channel}")
            assert present(channel)["streams"] == 0
        assert "not updated" not in pool.log_text()  # the keeper's rounds all went through
    finally:
        pool.stop()
