"""Revoking a token subject on a real pool of two workers: its streams on both workers, through
both front doors, end within a second with ``eventgate.revoked``; its old tokens are refused
(401 ``token_revoked``) while a token minted after the revocation, and other subjects' streams,
work as before."""

from __future__ import annotations

import json
import time

from eventgate.shared import keys
from eventgate.web.app import create_app
from tests.clients import StreamClient, stream_path
from tests.servers import wait_for

FLASK_DOOR = {"X_Via_Flask": "1"}  # gunicorn drops the header: the fast path declines


def streams_per_worker(redis_server, pids: list[int]) -> dict[int, int]:
    """Open streams per worker of the pool, from the workers' status records."""
    records = [json.loads(raw) for raw in redis_server.client().hvals(keys.WORKERS)]
    return {r["pid"]: r["streams"] for r in records if r["pid"] in pids}


def open_on_both_workers(pool, redis_server, path: str) -> list[StreamClient]:
    """Streams on ``path`` (half through each front door) until both workers hold some: which
    worker accepts a connection is the kernel's choice."""
    clients: list[StreamClient] = []
    pids = pool.worker_pids()
    for _ in range(5):
        for n in range(4):
            headers = FLASK_DOOR if n % 2 else {}
            clients.append(StreamClient(pool.port, path, headers).start().wait_open())
        wait_for(lambda: sum(streams_per_worker(redis_server, pids).values()) == len(clients),
                 5, "the workers' status records")
        counts = streams_per_worker(redis_server, pids)
        if len(counts) == 2 and all(count > 0 for count in counts.values()):
            return clients
    raise AssertionError(f"every stream landed on one worker: {counts}")


def test_revocation_ends_streams_everywhere_and_refuses_old_tokens(
    make_pool, make_config, publish_key, tokens, channel, redis_server, publisher, unique
):
    pool = make_pool(workers=2, status_interval="0.2", max_streams_per_subject="40")
    wait_for(lambda: len(pool.worker_pids()) == 2, 10, "two workers")
    subject, other = f"user-{unique}", f"other-{unique}"
    old_token, _ = tokens.issue([channel], subject)
    revoked = open_on_both_workers(pool, redis_server, stream_path(old_token))
    bystander = StreamClient(pool.port, stream_path(tokens.issue([channel], other)[0]))
    bystander.start().wait_open()

    web = create_app(make_config()).test_client()
    answer = web.post("/api/revocations", json={"subject": subject},
                      headers={"Authorization": f"Bearer {publish_key}"})
    sent = time.monotonic()
    assert answer.status_code == 201, answer.get_json()
    assert answer.get_json()["subject"] == subject and answer.get_json()["revoked_at"]

    for client in revoked:
        assert client.ended.wait(max(0.0, sent + 1.0 - time.monotonic()) + 0.05), \
            "a stream of the revoked subject still open after a second"
        last = client.events[-1]
        assert (last.type, json.loads(last.data)) == ("eventgate.revoked", {"subject": subject})
    ttl = redis_server.client().ttl(keys.revoked_key(subject))
    assert 86400 - 2 <= ttl <= 86400  # token_max_ttl_seconds, the default

    # EventSource reconnects with the same token: refused for good, through either door.
    for headers in ({}, FLASK_DOOR):
        again = StreamClient(pool.port, stream_path(old_token), headers).start()
        assert again.status == 401 and again.json()["error"] == "token_revoked"

    # A token minted after the revocation (its second over: the same second is refused) works.
    revoked_second = int(time.time())
    wait_for(lambda: int(time.time()) > revoked_second, 2, "the revocation's second to pass")
    fresh = StreamClient(pool.port, stream_path(tokens.issue([channel], subject)[0]))
    fresh.start().wait_open()
    event_id = publisher.publish(channel, {"n": 1})
    for client in (fresh, bystander):
        assert client.wait_events(1)[-1].last_event_id == event_id
    assert not bystander.ended.is_set()
    for client in (fresh, bystander):
        client.close()
