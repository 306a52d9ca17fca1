"""Hosts as network namespaces (tests/hosts.py): a Redis in one host answers clients in another
across the switch, a cut or a partition drops packets silently (a client times out, it is never
refused) and heals at once, a stream pool runs in a host behind nginx and notices a cut from its
Redis, and closing a network leaves nothing behind, nor does a dead run."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.hosts import PREFIX, Host, Network, ip, links, namespaces
from tests.ops.production import PATH, running_edge
from tests.servers import RedisServer, wait_for

ROOT = Path(__file__).resolve().parents[2]

#: A test run killed with its network up: builds one with a process in a host, says so, waits.
KILLED_RUN = """
import sys
from tests.hosts import Network
network = Network().open()
sleeper = network.add_host("orphan").popen(["sleep", "60"])
print(network.run_id, network.uplink, sleeper.pid, flush=True)
sys.stdin.read()
"""

#: Run in a host: connect to the Redis at argv[1]:argv[2] and print the address it sees us at,
#: or the kind of failure (a partition must give TimeoutError, never ConnectionError).
CLIENT = """
import sys, redis
from redis.backoff import NoBackoff
from redis.retry import Retry
client = redis.Redis(host=sys.argv[1], port=int(sys.argv[2]), socket_connect_timeout=1.5,
                     socket_timeout=1.5, retry=Retry(NoBackoff(), 0))
try:
    print(client.client_info()["addr"])
except redis.RedisError as error:
    print(type(error).__name__)
"""


def gone(pid: int) -> bool:
    """Whether process ``pid`` has ended (a zombie has)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in "ZX"
    except OSError:
        return True


def client(server: RedisServer, timeout: float = 5) -> redis.Redis:
    """A client of ``server`` without retries (redis-py's would hide a timeout behind ten more
    attempts)."""
    return redis.Redis(host=server.host, port=server.port, socket_connect_timeout=timeout,
                       socket_timeout=timeout, retry=Retry(NoBackoff(), 0))


def ask_from(host: Host, server: RedisServer) -> str:
    """What ``CLIENT`` run by a Python process in ``host`` says about ``server``."""
    return host.run([sys.executable, "-c", CLIENT, server.host, str(server.port)]).stdout.strip()


def redis_cli(host: Host, server: RedisServer, seconds: int = 3):
    """``redis-cli PING`` from ``host``, given ``seconds`` before ``timeout`` ends it (124)."""
    return host.run(["timeout", str(seconds), "redis-cli", "-h", server.host,
                     "-p", str(server.port), "ping"])


def test_a_redis_in_one_host_answers_clients_in_another(network, make_redis_server):
    a, b = network.add_host("answer-a"), network.add_host("answer-b")
    server = make_redis_server(host=a)
    # `ip netns exec` execs: the pid Program holds (and signals) is redis-server's own.
    assert Path(f"/proc/{server.program.pid}/comm").read_text().strip() == "redis-server"

    assert redis_cli(b, server).stdout.strip() == "PONG"
    # Redis sees each client at its own host's address: the packets crossed the switch.
    assert ask_from(b, server).startswith(f"{b.address}:")
    assert client(server).client_info()["addr"].startswith(f"{network.local.address}:")
    # Each host has its own loopback: nothing listens on B's 127.0.0.1.
    own = b.run(["redis-cli", "-h", "127.0.0.1", "-p", str(server.port), "ping"])
    assert "Connection refused" in own.stdout + own.stderr
    assert len({a.address, b.address, network.local.address}) == 3
    assert all(address.startswith("127.") for address in (a.address, b.address))


def test_a_cut_host_drops_packets_silently_until_healed(network, make_redis_server):
    a, b = network.add_host("cut-a"), network.add_host("cut-b")
    server = make_redis_server(host=a)
    held = client(server, timeout=1)
    assert held.ping()

    a.cut()
    try:
        started = time.monotonic()
        with pytest.raises(redis.TimeoutError):  # not ConnectionError: nothing answers
            held.ping()
        assert time.monotonic() - started >= 0.9
        started = time.monotonic()
        assert redis_cli(b, server, seconds=2).returncode == 124  # timed out, not refused
        assert time.monotonic() - started >= 1.9
        assert ask_from(b, server) == "TimeoutError"
    finally:
        a.heal()
    wait_for(lambda: redis_cli(b, server).stdout.strip() == "PONG", 5, "B reaching A again")
    assert held.ping()


def test_a_partition_cuts_only_between_its_sides(network, make_redis_server):
    a, b = network.add_host("part-a"), network.add_host("part-b")
    server = make_redis_server(host=a)

    network.partition([b], [a])
    try:
        assert ask_from(b, server) == "TimeoutError"
        assert client(server).ping()  # the test's own host still reaches A
    finally:
        network.heal()
    assert ask_from(b, server).startswith(f"{b.address}:")


def test_a_stream_pool_in_a_host_serves_nginx_and_notices_a_cut(
    network, make_redis_server, make_pool, tmp_path
):
    redis_host, stream_host = network.add_host("pool-redis"), network.add_host("pool-stream")
    server = make_redis_server(host=redis_host)
    pool = make_pool(host=stream_host, redis_url=server.url)
    url = f"http://{pool.address}:{pool.port}/streams/healthz"

    curl = network.local.run(["curl", "-sS", "--max-time", "5", url])
    assert json.loads(curl.stdout)["redis_connected"] is True, curl.stderr
    if shutil.which("nginx", path=PATH) is not None:
        (tmp_path / "edge").mkdir()
        with running_edge(tmp_path / "edge", stream_nodes=(f"{pool.address}:{pool.port}",)) \
                as edge:
            answer = edge.request("GET", "/streams/healthz")
        assert answer.status == 200
        assert json.loads(answer.body)["pid"] in pool.worker_pids()

    redis_host.cut()
    try:  # the worker's PING on its pub/sub connection goes unanswered (2.3–4.0 s measured)
        pool.wait_until(lambda: not pool.health()["redis_connected"], 15,
                        "the stream worker to notice its Redis is cut off")
    finally:
        redis_host.heal()
    pool.wait_until(lambda: pool.health()["redis_connected"], 15, "the pub/sub reconnect")


def test_close_removes_everything_and_open_sweeps_dead_runs_leftovers(network):
    # A run killed with its network up, a process still running in one of its hosts …
    child = subprocess.Popen([sys.executable, "-c", KILLED_RUN], cwd=ROOT, stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    killed_run, killed_uplink, orphan = child.stdout.readline().split()
    child.kill()
    child.wait(5)
    # … and one whose pid lives on in another process (ours: same pid, another start time).
    reused_run = f"{PREFIX}-{os.getpid()}-1-abcdef"
    ip("netns", "add", f"{reused_run}-switch")
    ip("link", "add", f"{PREFIX}abcdef", "type", "veth", "peer", "name", f"{PREFIX}abcdeg")
    ip("link", "set", f"{PREFIX}abcdef", "alias", reused_run)

    fresh = Network().open()
    assert not [name for name in namespaces() if name.startswith((killed_run, reused_run))]
    assert not [link for link in links()
                if link["ifname"] in (killed_uplink, f"{PREFIX}abcdef", f"{PREFIX}abcdeg")]
    wait_for(lambda: gone(int(orphan)), 5, "the dead run's orphan to be killed")
    assert network.switch in namespaces()  # a live run's network is left alone

    host = fresh.add_host("leftover")
    running = host.popen(["sleep", "60"])
    assert fresh.close() == [running.pid]  # killed, and reported as a leak
    assert running.wait(5) == -9
    assert fresh.run_id not in ip("netns", "list")
    assert fresh.uplink not in ip("link", "show")
