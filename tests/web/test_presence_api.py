"""GET /api/channels/<channel>/presence on the web app: its shape, pruning of expired leases,
and its refusals. (Leases held by real stream workers: tests/presence/.)"""

from __future__ import annotations

import time

from eventgate.shared import keys


def test_an_empty_channel_has_no_streams(client, auth, channel):
    answer = client.get(f"/api/channels/{channel}/presence", headers=auth)
    assert answer.status_code == 200
    assert answer.get_json() == {"channel": channel, "streams": 0, "subjects": []}


def test_live_leases_are_counted_by_subject_and_expired_ones_pruned(
    client, auth, channel, redis_server
):
    opened = int(time.time() * 1000) - 60_000
    far = 2**50
    key = keys.presence_key(channel)
    redis_server.client().zadd(key, {
        f"user-7|{opened}.a1": far,
        f"user-7|{opened + 5000}.a2": far,
        f"a|b|{opened}.b1": far,  # a subject may hold "|"
        f"|{opened}.c1": far,  # anonymous
        f"user-9|{opened}.d1": 1,  # expired long ago: a dead worker's
    })
    answer = client.get(f"/api/channels/{channel}/presence", headers=auth)
    assert answer.status_code == 200, answer.get_data(as_text=True)
    found = answer.get_json()
    assert found["streams"] == 4
    subjects = {s["subject"]: s for s in found["subjects"]}
    assert set(subjects) == {"user-7", "a|b"}
    assert subjects["user-7"]["streams"] == 2
    assert subjects["user-7"]["since"] == time.strftime(
        "%Y-%m-%dT%H:%M:%SZ", time.gmtime(opened / 1000))
    assert redis_server.client().zscore(key, f"user-9|{opened}.d1") is None


def test_a_bad_channel_is_400_json(client, auth):
    answer = client.get("/api/channels/-bad!/presence", headers=auth)
    assert answer.status_code == 400
    assert answer.get_json()["error"] == "invalid_name"
    assert answer.get_json()["message"]


def test_the_publisher_key_is_required(client, channel):
    answer = client.get(f"/api/channels/{channel}/presence")
    assert answer.status_code == 401
    assert answer.get_json()["error"] == "unauthorized"
