"""A full Redis (maxmemory reached, noeviction): POST /api/events answers 503 redis_full, by the
publish fast path and by the Flask view alike; the app keeps serving everything else, and
publishes succeed again once Redis has room."""

from __future__ import annotations

from eventgate.shared import keys
from tests.fullredis import SMALL_REDIS, fill_up


def test_a_full_redis_is_503_redis_full_and_the_app_keeps_serving(
    make_redis_server, publish_clients, auth, channel
):
    server = make_redis_server(*SMALL_REDIS)
    clients = publish_clients(redis_url=server.url)
    redis_client = server.client()
    fillers = fill_up(redis_client)

    for door, client in clients.items():
        for body in ({"channel": channel, "data": 1}, [{"channel": channel, "data": 2}]):
            response = client.post("/api/events", json=body, headers=auth)
            assert response.status_code == 503, (door, response.get_data(as_text=True))
            assert response.get_json()["error"] == "redis_full", door
            assert "full" in response.get_json()["message"]
            assert response.headers["Retry-After"] == "1"
    assert redis_client.exists(keys.log_key(channel)) == 0

    token = clients["fast"].post("/api/tokens", json={"channels": [channel]}, headers=auth)
    assert token.status_code == 201
    assert clients["fast"].get("/readyz").status_code == 200  # Redis answers: only it is full

    redis_client.delete(*[f"filler:{n}" for n in range(fillers)])
    response = clients["fast"].post("/api/events", json={"channel": channel}, headers=auth)
    assert response.status_code == 201
