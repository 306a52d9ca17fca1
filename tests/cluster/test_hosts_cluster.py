"""The deployment over several hosts (network namespaces, tests/hosts.py): a Redis Cluster on
three Redis hosts, two stream nodes on hosts of their own behind the production edge's nginx (one
upstream, no stickiness), and numbered rounds on 200 channels followed through nginx.

A client that reconnects to the other stream node resumes exactly; a stream node cut from Redis
(its link to the Redis hosts gone, nginx still reaching it) ends its streams with a jittered
retry and they resume on the other node; a Redis host cut from everyone (a primary cut from the
majority) fails over, and the clients end as after any failover: every event the log kept, once,
in order, or the loss event for what Redis itself lost."""

from __future__ import annotations

import time
from collections import Counter

from tests.cluster.traffic import RoundPublisher, follow, judge
from tests.ha.traffic import Cutter
from tests.ha.verdict import Verdict
from tests.servers import wait_for

CHANNELS = 200
RATE = 5.0


def start(hosted, tokens, publish_key):
    base = f"h{time.monotonic_ns()}"
    channels = [f"{base}.{n}" for n in range(CHANNELS)]
    clients = follow(hosted.edge.port, tokens, channels, tls=True)
    publisher = RoundPublisher(hosted.web.port, publish_key, channels, RATE).start()
    publisher.wait_rounds(3)
    return clients, publisher


def finish(hosted, clients, publisher, rounds: int = 10) -> Verdict:
    """Publish ``rounds`` more rounds, stop, wait for the clients to catch up, judge."""
    try:
        publisher.wait_rounds(publisher.rounds + rounds, timeout=60)
        publisher.stop()
        return judge(hosted.cluster, clients, publisher)
    finally:
        publisher.stop()
        for client in clients.values():
            client.stop()


def streams_per_node(hosted) -> list[int]:
    return [pool.health()["streams"] for pool in hosted.streams]


def test_clients_that_reconnect_through_nginx_resume_exactly_on_either_node(
    hosted, tokens, publish_key
):
    clients, publisher = start(hosted, tokens, publish_key)
    cutter = Cutter(list(clients.values()), every=0.5).start()
    try:
        publisher.wait_rounds(publisher.rounds + 20)
    finally:
        cutter.stop()
    wait_for(lambda: sum(streams_per_node(hosted)) == len(clients), 10,
             "every client to be connected again")
    spread = streams_per_node(hosted)
    assert min(spread) > 0, (spread, [(c.connections, c.failed_status, c.current.status
                                       if c.current else None) for c in clients.values()])
    verdict = finish(hosted, clients, publisher)
    print(f"\n{cutter.cuts} cuts, statuses {dict(publisher.statuses)}")
    assert cutter.cuts > 2 * len(clients)  # each reconnected, most of them more than once
    assert not verdict.problems, verdict.problems[:10]



def test_a_stream_node_cut_from_redis_sends_its_clients_to_the_other(
    hosted, tokens, publish_key
):
    clients, publisher = start(hosted, tokens, publish_key)
    cut_node, other = hosted.streams
    held = streams_per_node(hosted)[0]
    assert held > 0
    cut_at = time.monotonic()
    hosted.network.partition([hosted.stream_hosts[0]], hosted.redis_hosts)
    try:
        # Its streams end (no node answered for SHED_AFTER_SECONDS) and come back on the other.
        cut_node.wait_until(lambda: cut_node.health()["streams"] == 0, 20,
                            "the cut node to shed its streams")
        shed_after = time.monotonic() - cut_at
        wait_for(lambda: other.health()["streams"] == len(clients), 20,
                 "every client on the other node")
        moved_after = time.monotonic() - cut_at
        verdict = finish(hosted, clients, publisher)
    finally:
        hosted.network.heal()
    print(f"\n{held} streams on the cut node: shed after {shed_after:.2f} s, all on the other "
          f"after {moved_after:.2f} s; statuses {dict(publisher.statuses)}")
    assert not verdict.problems, verdict.problems[:10]

    cut_node.wait_until(lambda: cut_node.health()["redis_connected"], 15, "the cut node back")


def test_a_primary_cut_from_the_majority_fails_over_and_nothing_kept_is_missed(
    hosted, tokens, publish_key
):
    clients, publisher = start(hosted, tokens, publish_key)
    cluster = hosted.cluster
    primaries_before = Counter(node.host for node in cluster.primaries())
    redis_host = hosted.redis_hosts[0]
    cut_primary = next(node for node in cluster.primaries() if node.host == redis_host.address)
    redis_host.cut()
    try:
        # Rounds go on only once every shard takes writes again: the cut one failed over.
        verdict = finish(hosted, clients, publisher)
    finally:
        redis_host.heal()
        cluster.wait_healthy(60)
    assert cluster.role(cut_primary) != "master"  # back as a replica of the promoted one
    assert not verdict.problems, verdict.problems[:10]
    print(f"\nprimaries by host before {dict(primaries_before)}; statuses "
          f"{dict(publisher.statuses)}; {verdict.figures.get('lost_seen')}")

