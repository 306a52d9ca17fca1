"""Readiness under Sentinel: ``/readyz`` (web) and ``/streams/readyz`` (stream) answer 503 with
a JSON sentence, at once, while no writable primary is known — the sentinels do not answer, or
the primary they name answers ROLE as a replica. (200 on a healthy set, and again after a
failover: tests/ha/test_publisher_sentinel.py and test_stream_sentinel.py.)"""

from __future__ import annotations

import json
import time

from eventgate.web.app import create_app
from tests.servers import LOOPBACK
from tests.stack import http_get
from tests.stream.pool import StreamPool


def _web_readyz(make_config, url: str):  # noqa: ANN001, ANN202 - the root conftest's factory
    client = create_app(make_config(redis_url=url)).test_client()
    started = time.monotonic()
    response = client.get("/readyz")
    return response, time.monotonic() - started


def test_web_readyz_is_503_while_no_sentinel_answers(make_config, dead_sentinels_url):
    response, seconds = _web_readyz(make_config, dead_sentinels_url)
    assert response.status_code == 503 and seconds < 1.0
    assert response.get_json() == {
        "error": "not_ready", "message": "no sentinel names a primary for 'eventgate'."}
    assert response.headers["Retry-After"] == "1"


def test_web_readyz_is_503_while_the_named_primary_is_a_replica(make_config,
                                                               replica_named_primary_url):
    response, seconds = _web_readyz(make_config, replica_named_primary_url)
    assert response.status_code == 503 and seconds < 1.0
    assert response.get_json()["message"] == (
        "the Redis the sentinels name as primary answers as a replica.")


def _stream_readyz(pool: StreamPool) -> tuple[int, bytes]:
    status, _, body = http_get(f"http://{LOOPBACK}:{pool.port}/streams/readyz")
    return status, body


def test_stream_readyz_is_503_while_no_sentinel_answers(make_pool, dead_sentinels_url):
    pool = make_pool(redis_url=dead_sentinels_url, connected=False)
    status, body = _stream_readyz(pool)
    assert status == 503
    assert json.loads(body) == {
        "error": "not_ready",
        "message": "Redis is not reachable from this worker: its pub/sub connection is down.",
    }


def test_stream_readyz_is_503_while_the_named_primary_is_a_replica(make_pool,
                                                                  replica_named_primary_url):
    # Pub/sub works on a replica: the worker connects, and only readiness says it cannot write.
    pool = make_pool(redis_url=replica_named_primary_url)
    status, body = _stream_readyz(pool)
    assert status == 503
    assert json.loads(body)["message"] == (
        "Redis is not reachable from this worker: "
        "the Redis the sentinels name as primary answers as a replica.")
