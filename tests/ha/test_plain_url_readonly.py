"""A plain ``redis://`` URL whose server is demoted to a replica (what a managed Redis's moving
primary endpoint leaves behind): the publish that meets ``READONLY`` fails (503), and the
connection is dropped, so that the next publish connects anew (re-resolving the endpoint) and
succeeds once the name leads to a primary again."""

from __future__ import annotations

import pytest

from eventgate.shared.errors import PublishError
from eventgate.shared.publisher import Publisher
from eventgate.web.app import create_app
from tests.servers import LOOPBACK


def test_readonly_drops_the_connection(two_nodes, channel):
    first, second = two_nodes
    publisher = Publisher.from_url(first.url)
    admin = first.client()
    try:
        publisher.publish(channel, "before")
        before = publishing(admin)
        second.client().execute_command("REPLICAOF", "NO", "ONE")
        admin.execute_command("REPLICAOF", LOOPBACK, second.port)  # demoted

        with pytest.raises(PublishError, match="ReadOnlyError"):
            publisher.publish(channel, "refused")
        admin.execute_command("REPLICAOF", "NO", "ONE")  # the endpoint leads to a primary again
        second.client().execute_command("REPLICAOF", LOOPBACK, first.port)

        assert publisher.publish(channel, "after")
        after = publishing(admin)
        assert after and after.isdisjoint(before), "the publisher kept its old connection"
    finally:
        publisher.client.close()


def publishing(admin) -> set[str]:  # noqa: ANN001 - a redis client
    """The ids of the connections whose last command was a publish (the script)."""
    return {entry["id"] for entry in admin.client_list() if entry.get("cmd") == "evalsha"}


def test_web_readyz_is_503_while_its_redis_answers_as_a_replica(two_nodes, make_config):
    first, second = two_nodes
    client = create_app(make_config(redis_url=first.url)).test_client()
    assert client.get("/readyz").status_code == 200
    first.client().execute_command("REPLICAOF", LOOPBACK, second.port)  # demoted
    try:
        refused = client.get("/readyz")
        assert refused.status_code == 503
        assert refused.get_json()["error"] == "not_ready"
        assert "replica" in refused.get_json()["message"]
    finally:
        first.client().execute_command("REPLICAOF", "NO", "ONE")
    assert client.get("/readyz").status_code == 200
