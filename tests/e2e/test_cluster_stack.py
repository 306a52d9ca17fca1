"""The stack in cluster mode (``EVENTGATE_REDIS_MODE=cluster``): supervisord runs six cluster
nodes beside the apps, ``redis-cluster-create`` makes them three primaries with a replica each on
the first start only (a restart keeps the same cluster), and the apps reach it through a
``redis+cluster://`` URL: one publish and one stream per shard go through nginx."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import redis

from eventgate.deploy.rediscluster import SLOTS, cluster_info
from eventgate.shared import keys
from eventgate.shared.tokens import ChannelTokens
from tests.clients import EventSourceClient
from tests.servers import LOOPBACK, wait_for

pytestmark = pytest.mark.stack(settings={
    "EVENTGATE_REDIS_MODE": "cluster", "EVENTGATE_HEARTBEAT": "1", "EVENTGATE_RETRY_MS": "500",
})

NODES = [f"redis-{index}" for index in range(1, 7)]
PROGRAMS = sorted(["nginx", *NODES, "stream", "web"])
CREATE = "redis-cluster-create"
EXITED_0 = f"exited: {CREATE} (exit status 0; expected)"


def node(port: int) -> redis.Redis:
    return redis.Redis(host=LOOPBACK, port=port, socket_timeout=2, decode_responses=True)


def statuses(stack) -> dict[str, str]:
    lines = stack.supervisorctl("status").stdout.splitlines()
    return {line.split()[0]: line.split()[1] for line in lines if line.strip()}


def running(stack) -> list[str]:
    return sorted(name for name, state in statuses(stack).items() if state == "RUNNING")


def cluster_nodes(stack) -> list[dict[str, object]]:
    """CLUSTER NODES as the first node sees it: each node's id, port, role, primary, slots."""
    found = []
    for line in node(stack.stack_redis.data_ports[0]).execute_command("CLUSTER", "NODES") \
            .splitlines():
        words = line.split()
        slots = 0
        for part in words[8:]:
            if not part.startswith("["):  # "[slot->-id]": a slot being migrated, not served
                first, _, last = part.partition("-")
                slots += int(last or first) - int(first) + 1
        found.append({"id": words[0], "port": int(words[1].split(":")[1].split("@")[0]),
                      "role": "primary" if "master" in words[2] else "replica",
                      "primary": words[3], "failed": "fail" in words[2], "slots": slots})
    return found


def ids(stack) -> dict[int, str]:
    return {port: node(port).execute_command("CLUSTER", "MYID")
            for port in stack.stack_redis.data_ports}


def opened_client(stack, channels: tuple[str, ...]) -> EventSourceClient:
    token, _ = ChannelTokens(stack.config.secret_keys).issue(list(channels))
    client = EventSourceClient(stack.port, token, channels).start()
    wait_for(lambda: client.opened, 10, "the stream to open")
    return client


def channel_per_shard(stack, prefix: str) -> tuple[str, ...]:
    """One channel whose log lives on each primary (CLUSTER KEYSLOT of its log key)."""
    first = node(stack.stack_redis.data_ports[0])
    ranges = [(int(low), int(high), primary[1])
              for low, high, primary, *_ in first.execute_command("CLUSTER", "SLOTS")]
    chosen: dict[int, str] = {}
    for number in range(1000):
        channel = f"{prefix}.{number}"
        slot = int(first.execute_command("CLUSTER", "KEYSLOT", keys.log_key(channel)))
        port = next(p for low, high, p in ranges if low <= slot <= high)
        chosen.setdefault(port, channel)
        if len(chosen) == 3:
            return tuple(chosen.values())
    raise AssertionError(f"no channel found for every shard: {chosen}")


def test_six_nodes_run_and_the_cluster_is_created_once(stack):
    wait_for(lambda: running(stack) == PROGRAMS, 15, "every program RUNNING")
    stack.wait_until(lambda: statuses(stack).get(CREATE) == "EXITED", 30, f"{CREATE} done")
    assert stack.log("supervisord").count(EXITED_0) == 1
    assert stack.log(CREATE).count("creating the cluster") == 1
    var = stack.var_dir.resolve()
    for port in stack.stack_redis.data_ports:
        info = cluster_info(f"{LOOPBACK}:{port}")
        assert info["cluster_state"] == "ok", (port, info)
        assert int(info["cluster_slots_ok"]) == SLOTS, (port, info)
        assert node(port).config_get("maxmemory")["maxmemory"] == str(256 * 1024 * 1024)
        assert node(port).config_get("maxmemory-policy")["maxmemory-policy"] == "noeviction"
        # each node's cluster state is in its own folder, kept across restarts
        conf = node(port).config_get("cluster-config-file")["cluster-config-file"]
        assert Path(conf) == var / "redis" / f"cluster-{port}" / "nodes.conf"
        assert Path(conf).exists()


def test_three_primaries_each_with_one_replica_serve_every_slot(stack):
    found = cluster_nodes(stack)
    assert sorted(n["port"] for n in found) == list(stack.stack_redis.data_ports)
    assert not [n for n in found if n["failed"]]
    primaries = {n["id"]: n for n in found if n["role"] == "primary"}
    replicas = [n for n in found if n["role"] == "replica"]
    assert len(primaries) == 3 and len(replicas) == 3
    assert sorted(n["primary"] for n in replicas) == sorted(primaries)  # one replica each
    assert sum(n["slots"] for n in primaries.values()) == SLOTS
    assert all(n["slots"] > 0 for n in primaries.values())
    for replica in replicas:
        info = node(replica["port"]).info("replication")
        assert info["master_port"] == primaries[replica["primary"]]["port"]
        assert info["master_link_status"] == "up"


def test_the_apps_are_given_the_cluster_url(stack):
    ports = stack.stack_redis.data_ports
    url = "redis+cluster://" + ",".join(f"127.0.0.1:{port}" for port in ports)
    assert stack.config.redis_url == stack.stack_redis.url == url
    for program in ("web", "stream"):
        pid = int(stack.supervisorctl("pid", program).stdout)
        environ = dict(entry.split("=", 1) for entry in
                       Path(f"/proc/{pid}/environ").read_text().split("\0") if "=" in entry)
        assert environ["EVENTGATE_REDIS_URL"] == url, program
        assert environ["EVENTGATE_REDIS_MODE"] == "cluster", program


def test_an_event_on_each_shard_goes_through_nginx_to_a_stream(stack, channel):
    """Needs the apps' cluster support (shared/redisconn.py, publisher, stream broker)."""
    channels = channel_per_shard(stack, channel)
    client = opened_client(stack, channels)
    try:
        for number, name in enumerate(channels):
            status, _, body = stack.post("/api/events", {"channel": name, "data": {"n": number}})
            assert status == 201, body
        wanted = [{"n": number} for number in range(len(channels))]
        assert sorted(client.wait_data(wanted, timeout=10), key=lambda d: d["n"]) == wanted
    finally:
        client.stop()
    received = [json.loads(e.data) for e in client.events if e.type == "message"]
    assert sorted(received, key=lambda d: d["n"]) == wanted  # once each


def test_a_restart_of_the_stack_keeps_the_cluster(stack):
    """``make down; make up``: each node reads its nodes.conf and rejoins the same cluster;
    ``redis-cluster-create`` sees it formed and creates nothing."""
    before = ids(stack)
    roles = {n["port"]: n["role"] for n in cluster_nodes(stack)}
    stack.stop()
    stack.start()  # waits for the cluster to serve every slot again
    assert ids(stack) == before
    assert {n["port"]: n["role"] for n in cluster_nodes(stack)} == roles
    stack.wait_until(lambda: statuses(stack).get(CREATE) == "EXITED", 30, f"{CREATE} done")
    assert stack.log("supervisord").count(EXITED_0) == 2
    assert stack.log(CREATE).count("creating the cluster") == 1  # the first start's only
    assert stack.log(CREATE).count("serves all") == 2
