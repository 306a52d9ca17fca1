"""The stack's cluster creation (deploy/rediscluster.py) decides from each node's CLUSTER INFO:
create only when every node is fresh, never over a cluster that formed, nor over half of one."""

from __future__ import annotations

from eventgate.deploy.rediscluster import create_command, fresh_nodes, idle_primary
from tests.servers import free_port

FRESH = {"cluster_state": "fail", "cluster_known_nodes": "1", "cluster_slots_assigned": "0"}
FORMED = {"cluster_state": "ok", "cluster_known_nodes": "6", "cluster_slots_assigned": "16384"}
# A node that was met but holds no slot yet knows the others: not fresh.
MET = {"cluster_state": "fail", "cluster_known_nodes": "6", "cluster_slots_assigned": "0"}
ADDRESSES = [f"127.0.0.1:{port}" for port in range(7000, 7006)]


def test_the_first_start_creates_the_cluster():
    assert fresh_nodes(dict.fromkeys(ADDRESSES, FRESH)) == ADDRESSES


def test_a_cluster_that_formed_is_left_to_itself():
    assert fresh_nodes(dict.fromkeys(ADDRESSES, FORMED)) == []
    assert fresh_nodes(dict.fromkeys(ADDRESSES, MET)) == []


def test_a_node_that_lost_its_nodes_conf_is_named():
    infos = {**dict.fromkeys(ADDRESSES, FORMED), ADDRESSES[2]: FRESH}
    assert fresh_nodes(infos) == [ADDRESSES[2]]


def test_redis_cli_is_asked_for_one_replica_per_primary_without_a_prompt():
    command = create_command("/usr/bin/redis-cli", ADDRESSES, 1)
    assert command == ["/usr/bin/redis-cli", "--cluster", "create", *ADDRESSES,
                       "--cluster-replicas", "1", "--cluster-yes"]


def test_a_primary_serving_no_slot_is_not_ready_yet(make_redis_server):
    # What a node to become a replica is for a moment after creation, the cluster already "ok".
    server = make_redis_server("--cluster-enabled", "yes", "--cluster-config-file",
                               "nodes-idle.conf",
                               # port + 10000 (the default bus port) may pass 65535
                               "--cluster-port", str(free_port()))
    address = f"127.0.0.1:{server.port}"
    assert "serving no slot" in idle_primary(address)
    server.client().execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)
    assert idle_primary(address) is None
