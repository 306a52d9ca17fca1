"""/healthz answers while the process lives; /readyz answers 200 only while Redis does."""

from __future__ import annotations

import time

from eventgate.web.app import create_app


def test_healthz_and_readyz_are_200_with_redis_up(client):
    assert client.get("/healthz").get_json() == {"status": "ok"}
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_with_redis_down_healthz_stays_200_and_readyz_is_503_fast(make_config, dead_redis_url):
    client = create_app(make_config(redis_url=dead_redis_url)).test_client()

    assert client.get("/healthz").status_code == 200
    started = time.monotonic()
    response = client.get("/readyz")

    assert time.monotonic() - started < 1.0
    assert response.status_code == 503
    assert response.get_json()["error"] == "not_ready"
