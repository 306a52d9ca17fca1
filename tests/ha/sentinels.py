"""Questions the Sentinel tests ask of a tests/servers.py:SentinelSet."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from tests.servers import LOOPBACK, RedisServer, SentinelSet
from tests.stack import http_get


def every_sentinel_names(sentinel_set: SentinelSet, node: RedisServer) -> bool:
    """Whether every sentinel lists ``node`` as the primary in ``SENTINEL MASTERS`` — what
    redis-py asks, and what changes only once a failover ended (``GET-MASTER-ADDR-BY-NAME``
    names the promoted replica earlier, on the leader). Each sentinel learns it on its own
    (hello messages, ~2 s apart) and a client asks the first that answers, so it can only be
    bound to follow once every one of them lists it."""
    for index in range(len(sentinel_set.sentinel_ports)):
        state = sentinel_set.sentinel(index).sentinel_master(sentinel_set.service)
        if int(state["port"]) != node.port or "failover_in_progress" in str(state["flags"]):
            return False
    return True


def stream_clients_on(node: RedisServer) -> list[str]:
    """The names of the stream workers' pub/sub connections ``node`` holds."""
    return [client["name"] for client in node.client().client_list()
            if client["name"].startswith("eventgate-stream-")]


def failovers_seen(port: int) -> float:
    """``eventgate_stream_failovers_total`` on the stream pool at ``port`` (0 until exposed)."""
    _status, _headers, body = http_get(f"http://{LOOPBACK}:{port}/metrics")
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            if sample.name == "eventgate_stream_failovers_total":
                return sample.value
    return 0.0
