"""The history page and rewind's start positions on the session's Redis Cluster: channels on
every shard, read through the web app and through shared/history.py with the app's own client."""

from __future__ import annotations

from eventgate.shared.history import rewind_positions
from tests.cluster.slots import channels_by_shard, log_of


def test_history_pages_and_rewind_starts_on_every_shard(cluster_app, publish_key):
    gate = cluster_app.extensions["eventgate"]
    client = cluster_app.test_client()
    auth = {"Authorization": f"Bearer {publish_key}"}
    channels = [names[0] for names in channels_by_shard(gate.publisher, 1).values()]
    for channel in channels:
        gate.publisher.publish_many([gate.publisher.draft(channel, {"n": n}) for n in range(5)])
    for channel in channels:
        log = [entry_id for entry_id, _ in log_of(gate.publisher, channel)]
        first = client.get(f"/api/channels/{channel}/events?limit=3", headers=auth)
        assert first.status_code == 200, first.get_json()
        assert [e["id"] for e in first.get_json()["events"]] == log[:3]
        assert first.get_json()["next"] == log[2]
        rest = client.get(f"/api/channels/{channel}/events?after={log[2]}", headers=auth)
        assert [e["data"]["n"] for e in rest.get_json()["events"]] == [3, 4]
        assert rest.get_json()["next"] is None
    starts = rewind_positions(gate.client, channels, 2)
    assert starts == {c: log_of(gate.publisher, c)[2][0] for c in channels}
