"""The scaling bench: what grows with stream processes and Redis shards, on this 2-core machine.

``.venv/bin/python bench/scaling.py [--quick]`` (or ``bench/run.py --only scale``) runs, for each
Redis topology — one redis-server (``redis://``, classic PUBLISH), a 1-primary and a 3-primary
Redis Cluster (``redis+cluster://``, sharded pub/sub; no replicas) — three measurements:

- **deliveries**: 1 then 2 stream processes (``gunicorn -k gevent -w 1`` each, bench/run.py's
  eventgate worker) hold 2,000 subscribers on 200 channels (10 per channel; with 2 processes each
  holds 5 of every channel's, as an nginx without stickiness spreads them); events published at a
  paced rate on random channels. Deliveries/s, the stream processes' CPU, deliveries per
  CPU-second (per-core efficiency), p99, and Redis CPU per published event on each shard.
- **publishes**: one publisher thread floods 1,000 channels nobody holds, batches of 100 and
  single events: publishes/s and Redis CPU per event on each shard.
- **memory** (first topology only): Redis memory per new log and per further retained event.
- **fan-out**: 1, 8 and 32 plain connections subscribed to X (as many stream workers holding
  it): Redis CPU per publish against the number of holders.
- **proxy** (first topology only): 2,000 streams of one stream process through nginx (one
  worker, the stream location's settings of deploy/nginx): nginx's RSS per idle stream and its
  CPU per delivery beside the stream process's.
- **isolation**: 2 stream processes; A holds channel X (one subscriber), B nothing, then B holds
  Y (same partition as X, so the same hash slot and shard: B has a connection to X's shard),
  then B holds X as well. Events on X only, flooded in batches of 100. Redis CPU per publish on
  X's shard must not grow when B holds only Y (PUBLISH and SPUBLISH deliver to a channel's
  subscribers only); it grows by one delivery when B holds X.

Events are published by eventgate's Publisher (bench/publish.py: its Lua script, under Cluster
one run per partition of a batch with SPUBLISH), 100-byte data; subscribers are bench/loadgen.c.

The machine has 2 cores: both stream processes are pinned to core 0; the load — bench/loadgen.c
(one per stream process), the paced publisher and every redis-server — to core 1, except the
flood's publisher, which gets core 0 (no stream process is busy then). Redis CPU is each
redis-server's utime+stime from /proc, less its idle rate (cluster bus, cron, the stream
processes' PINGs) measured beforehand. Raw results go to var/bench/<time>-scaling/.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import secrets
import selectors
import shutil
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import redis
from redis.crc import key_slot

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as base  # noqa: E402  - bench/run.py: processes, pinning, /proc readings, loadgen
from run import LOAD_CORE, LOOPBACK, SERVER_CORE, Loadgen, Process, Publisher  # noqa: E402

from eventgate.shared import keys  # noqa: E402


@dataclass
class Plan:
    subscribers: int
    channels: int
    rates: list  # events/s, random channel
    seconds: float
    flood_seconds: float
    isolation_seconds: float
    isolation_subs: int
    isolation_repeats: int
    topologies: list


FULL = Plan(2000, 200, [1000, 3000], 4.0, 3.0, 3.0, 1, 4, ["single", "cluster1", "cluster3"])
QUICK = Plan(2000, 200, [2000], 3.0, 2.0, 2.0, 1, 1, ["single", "cluster1", "cluster3"])
#: Connections subscribed to the channel in the fan-out runs.
FANOUT_HOLDERS = [1, 8, 32]
#: Events per script run in the isolation runs: the script's fixed cost shared, so that the
#: part a delivery adds is not lost in it.
ISOLATION_BATCH = 100


#: Streams the load generator opens at once (bench/run.py's is 256): the bench measures steady
#: delivery, not accepts.
WINDOW = 32
#: The stream processes' Redis pool. Under Cluster, redis-py's node pools do not wait for a free
#: connection (shared/redisconn.py passes ``connection_pool_class``, which RedisCluster uses only
#: for a client made from a URL), so opening streams at a pace ends some with MaxConnectionsError
#: at the default 16; the bench gives every topology the same larger pool.
POOL_SIZE = "256"


class Shards:
    """The Redis side: one plain redis-server, or a Cluster of ``count`` primaries (no replicas),
    each pinned to the load core with the stack's persistence (AOF, fsync every second)."""

    def __init__(self, workdir: Path, count: int, cluster: bool) -> None:
        self.processes: list[Process] = []
        self.ports: list[int] = []
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        for _ in range(count):
            port = cluster_port() if cluster else base.free_port()
            data = workdir / f"redis-{port}"
            data.mkdir(parents=True)
            args = [binary, "--port", str(port), "--bind", LOOPBACK, "--dir", str(data),
                    "--save", "", "--appendonly", "yes", "--appendfsync", "everysec",
                    "--maxclients", "19000", "--logfile", ""]
            if cluster:
                args += ["--cluster-enabled", "yes", "--cluster-node-timeout", "5000",
                         "--cluster-config-file", str(data / "nodes.conf")]
            self.processes.append(Process(f"redis-{port}", base.pinned(LOAD_CORE, args), workdir))
            self.ports.append(port)
        self.clients = [redis.Redis(host=LOOPBACK, port=port) for port in self.ports]
        for client in self.clients:
            base.wait_until(client.ping, 10, "redis")
        self.owner = [0] * 16384
        if not cluster:
            self.url = f"redis://{LOOPBACK}:{self.ports[0]}/0"
            return
        nodes = [f"{LOOPBACK}:{port}" for port in self.ports]
        self.url = "redis+cluster://" + ",".join(nodes)
        if count == 1:  # redis-cli --cluster create wants 3 primaries at least
            self.clients[0].execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)
        else:
            subprocess.run(["redis-cli", "--cluster", "create", *nodes, "--cluster-replicas",
                            "0", "--cluster-yes"], check=True, capture_output=True)
        base.wait_until(self._ready, 30, "the cluster to be ok")
        for start, end, primary, *_ in self.clients[0].execute_command("CLUSTER", "SLOTS"):
            index = self.ports.index(int(primary[1]))
            self.owner[start:end + 1] = [index] * (end - start + 1)

    def _ready(self) -> bool:
        return all(b"cluster_state:ok" in c.execute_command("CLUSTER", "INFO")
                   for c in self.clients)

    def shard_of(self, channel: str) -> int:
        return self.owner[key_slot(keys.partition_tag(keys.partition(channel)).encode())]

    def memory(self) -> int:
        """Bytes Redis holds for data on every shard together (INFO used_memory)."""
        return sum(client.info("memory")["used_memory"] for client in self.clients)

    def cpu(self) -> list[float]:
        return [base.cpu_seconds(p.popen.pid) for p in self.processes]

    def per_shard(self, counts: dict[str, int]) -> list[int]:
        """Events per shard from events per channel."""
        out = [0] * len(self.processes)
        for channel, count in counts.items():
            out[self.shard_of(channel)] += count
        return out

    def stop(self) -> None:
        for process in self.processes:
            process.stop()


def cluster_port() -> int:
    """A free port whose cluster bus port (+10000) is a port too."""
    while (port := base.free_port()) > 55535:
        pass
    return port


class Node(base.Eventgate):
    """A stream process (bench/run.py's eventgate worker, its flags, pinned to core 0), with a
    larger Redis pool (see POOL_SIZE)."""

    def env(self) -> dict:
        return {**super().env(), "EVENTGATE_REDIS_POOL_SIZE": POOL_SIZE}


class Run:
    def __init__(self, plan: Plan, workdir: Path, loadgen: Path) -> None:
        self.plan = plan
        self.workdir = workdir
        self.loadgen = loadgen
        self.secret = secrets.token_urlsafe(32)
        self.publish_key = secrets.token_urlsafe(32)
        self.rows: dict[str, list] = {"deliveries": [], "publishes": [], "isolation": [],
                                      "proxy": [], "memory": [], "fanout": []}
        self.counter = 0

    def tag(self, what: str) -> str:
        self.counter += 1
        return f"{what}{self.counter}"

    def node(self, shards: Shards, name: str) -> Node:
        workdir = self.workdir / self.tag(name)
        workdir.mkdir()
        return Node(name, workdir, shards, self.secret, self.publish_key).start()  # type: ignore[arg-type]

    def topology(self, name: str) -> None:
        workdir = self.workdir / name
        workdir.mkdir()
        count = 3 if name == "cluster3" else 1
        shards = Shards(workdir, count, cluster=name != "single")
        log(f"{name}: {count} shard(s) at {shards.url}")
        try:
            self.publishes(name, shards)
            self.deliveries(name, shards)
            self.isolation(name, shards)
            self.fanout(name, shards)
            if name == self.plan.topologies[0]:
                self.memory(name, shards)
                self.proxy(name, shards)
        finally:
            shards.stop()

    # -- helpers ------------------------------------------------------------------------------

    def idle_rate(self, shards: Shards, seconds: float = 2.0) -> list[float]:
        """Each redis-server's CPU seconds per second with nothing published."""
        cpu0, t0 = shards.cpu(), time.monotonic()
        time.sleep(seconds)
        cpu1, t1 = shards.cpu(), time.monotonic()
        return [(b - a) / (t1 - t0) for a, b in zip(cpu0, cpu1, strict=True)]

    @staticmethod
    def redis_us(shards: Shards, cpu0: list, cpu1: list, idle: list, seconds: float,
                 counts: list[int]) -> list[float | None]:
        """Redis CPU µs per event on each shard, its idle rate taken out."""
        return [((b - a) - rate * seconds) / n * 1e6 if n else None
                for a, b, rate, n in zip(cpu0, cpu1, idle, counts, strict=True)]

    def clients(self, node: Node, channels: list[str], count: int, tag: str) -> Loadgen:
        """bench/loadgen.c's subscribers of ``channels`` on ``node``, none open yet."""
        return Loadgen(self.loadgen, node, channels, count, tag, reconnect=True, window=WINDOW,
                       start=0)

    @staticmethod
    def open(loadgens: list[Loadgen], counts: list[int], publisher: Publisher) -> int:
        """Open each loadgen's streams and wait until every one got an event."""
        for loadgen, count in zip(loadgens, counts, strict=True):
            loadgen.ask(f"open {count}")
        for loadgen, count in zip(loadgens, counts, strict=True):
            base.wait_until(lambda lg=loadgen, n=count: lg.ask("stats")["answered"] >= n, 60,
                            f"{count} streams to open", 0.1)
        for _ in range(6):
            publisher.pace(1, 0, "all")
            try:
                base.wait_until(lambda: all(
                    lg.ask("stats")["with_events"] >= n
                    for lg, n in zip(loadgens, counts, strict=True)), 3, "first events", 0.1)
                break
            except TimeoutError:
                continue
        return sum(lg.ask("stats")["with_events"] for lg in loadgens)

    @staticmethod
    def counts(before: dict, after: dict) -> dict[str, int]:
        return {ch: after[ch] - before.get(ch, 0) for ch in after}

    # -- publishes ----------------------------------------------------------------------------

    def publishes(self, name: str, shards: Shards) -> None:
        holder = Node("flood", self.workdir / name, shards, self.secret, self.publish_key)
        channels = [f"bench.flood.{name}.c{i}" for i in range(1000)]
        publisher = Publisher(holder, channels, self.tag("flood"), core=SERVER_CORE)
        try:
            publisher.pace(1, 0, "all")  # every log exists: steady state
            idle = self.idle_rate(shards)
            for batch in (100, 1):
                seq0 = publisher.sequence()
                cpu0, t0 = shards.cpu(), time.monotonic()
                result = publisher.flood(self.plan.flood_seconds, batch, 1)
                cpu1, t1 = shards.cpu(), time.monotonic()
                per_shard = shards.per_shard(self.counts(seq0, publisher.sequence()))
                row = {
                    "topology": name, "batch": batch,
                    "publishes_per_s": result["published"] / result["seconds"],
                    "redis_us_per_event": self.redis_us(shards, cpu0, cpu1, idle, t1 - t0,
                                                        per_shard),
                    "redis_cpu_pct": [(b - a) / (t1 - t0) * 100
                                      for a, b in zip(cpu0, cpu1, strict=True)],
                    "events_per_shard": per_shard,
                }
                self.rows["publishes"].append(row)
                log(f"publish {name} batch {batch}: {row['publishes_per_s']:,.0f}/s, Redis "
                    f"µs/event per shard {fmt_list(row['redis_us_per_event'], 1)}, Redis CPU % "
                    f"{fmt_list(row['redis_cpu_pct'], 0)}")
        finally:
            publisher.stop()

    # -- deliveries ---------------------------------------------------------------------------

    def deliveries(self, name: str, shards: Shards) -> None:
        plan = self.plan
        for processes in (1, 2):
            nodes = [self.node(shards, f"stream{i}") for i in range(processes)]
            channels = [f"bench.scale.{name}.p{processes}.c{i}" for i in range(plan.channels)]
            share = plan.subscribers // processes
            tag = self.tag("deliv")
            loadgens = [self.clients(node, channels, share, f"{tag}-{i}")
                        for i, node in enumerate(nodes)]
            publisher = Publisher(nodes[0], channels, tag)
            try:
                held = self.open(loadgens, [share] * processes, publisher)
                if held < plan.subscribers:
                    log(f"deliveries {name} x{processes}: only {held} streams got events")
                idle = self.idle_rate(shards)
                for rate in plan.rates:
                    self._delivery_step(name, shards, nodes, loadgens, publisher, rate, idle,
                                        plan.subscribers // plan.channels)
            finally:
                for loadgen in loadgens:
                    loadgen.stop()
                publisher.stop()
                for node in nodes:
                    node.stop()

    def _delivery_step(self, name: str, shards: Shards, nodes: list, loadgens: list,
                       publisher: Publisher, rate: float, idle: list, fanout: int) -> None:
        seq0 = publisher.sequence()
        for loadgen in loadgens:
            loadgen.ask("reset")
        node0, cpu0, t0 = [n.cpu() for n in nodes], shards.cpu(), time.monotonic()
        published = publisher.pace(rate, self.plan.seconds, "random")
        expected = published["published"] * fanout

        def received() -> int:
            return sum(lg.ask("report")["events"] for lg in loadgens)

        with contextlib.suppress(TimeoutError):
            base.wait_until(lambda: received() >= expected, 5, "delivery")
        node1, cpu1, t1 = [n.cpu() for n in nodes], shards.cpu(), time.monotonic()
        reports = [lg.ask("report") for lg in loadgens]
        got = sum(r["events"] for r in reports)
        per_shard = shards.per_shard(self.counts(seq0, publisher.sequence()))
        stream_cpu = sum(b - a for a, b in zip(node0, node1, strict=True))
        row = {
            "topology": name, "processes": len(nodes), "rate": rate,
            "published_per_s": published["published"] / published["seconds"],
            "deliveries_per_s": got / published["seconds"], "expected": expected,
            "received": got, "gaps": sum(r["gaps"] for r in reports),
            "p99_ms": max(r["p99_ms"] for r in reports),
            "stream_cpu_s": stream_cpu,
            "stream_cpu_pct": stream_cpu / published["seconds"] * 100,
            "deliveries_per_cpu_s": got / stream_cpu if stream_cpu else None,
            "redis_us_per_event": self.redis_us(shards, cpu0, cpu1, idle, t1 - t0, per_shard),
            "events_per_shard": per_shard,
        }
        self.rows["deliveries"].append(row)
        log(f"deliveries {name} x{len(nodes)} at {rate}/s: {got}/{expected}, "
            f"{row['deliveries_per_s']:,.0f}/s, stream CPU {row['stream_cpu_pct']:.0f}%, "
            f"{row['deliveries_per_cpu_s'] or 0:,.0f} per CPU-s, p99 {row['p99_ms']:.1f} ms, "
            f"Redis µs/event {fmt_list(row['redis_us_per_event'], 1)}")

    # -- isolation ----------------------------------------------------------------------------

    def isolation(self, name: str, shards: Shards) -> None:
        plan = self.plan
        x = f"bench.iso.{name}.x"
        y = next(f"bench.iso.{name}.y{i}" for i in range(10_000)
                 if keys.partition(f"bench.iso.{name}.y{i}") == keys.partition(x))
        a, b = self.node(shards, "iso-a"), self.node(shards, "iso-b")
        tag = self.tag("iso")
        publisher = Publisher(a, [x], tag)
        subs = plan.isolation_subs
        loadgens = [self.clients(a, [x], subs, f"{tag}-ax")]
        try:
            self.open(loadgens, [subs], publisher)
            self._isolation_step(name, shards, [a, b], publisher, x, "A holds X; B holds nothing")
            loadgens.append(self.clients(b, [y], subs, f"{tag}-by"))
            first_y = Publisher(b, [y], f"{tag}-y")
            self.open(loadgens[-1:], [subs], first_y)
            first_y.stop()
            self._isolation_step(name, shards, [a, b], publisher, x,
                                 "A holds X; B holds Y (same partition, same shard)")
            loadgens.append(self.clients(b, [x], subs, f"{tag}-bx"))
            self.open(loadgens[-1:], [subs], publisher)
            self._isolation_step(name, shards, [a, b], publisher, x,
                                 "A and B both hold X (a control: one more delivery)")
        finally:
            for loadgen in loadgens:
                loadgen.stop()
            publisher.stop()
            a.stop()
            b.stop()

    def _isolation_step(self, name: str, shards: Shards, nodes: list, publisher: Publisher,
                        channel: str, what: str) -> None:
        index = shards.shard_of(channel)
        samples, stream, rates = [], [], []
        for _ in range(self.plan.isolation_repeats):
            idle = self.idle_rate(shards)
            seq0 = publisher.sequence()
            node0, cpu0, t0 = [n.cpu() for n in nodes], shards.cpu(), time.monotonic()
            published = publisher.flood(self.plan.isolation_seconds, ISOLATION_BATCH, 1)
            rates.append(published["published"] / published["seconds"])
            time.sleep(0.5)  # the tail of the deliveries; idle CPU is taken out for it too
            node1, cpu1, t1 = [n.cpu() for n in nodes], shards.cpu(), time.monotonic()
            per_shard = shards.per_shard(self.counts(seq0, publisher.sequence()))
            samples.append(self.redis_us(shards, cpu0, cpu1, idle, t1 - t0, per_shard)[index])
            stream.append([round(b - a, 2) for a, b in zip(node0, node1, strict=True)])
        row = {"topology": name, "case": what, "redis_us_per_publish": samples,
               "stream_cpu_s": stream, "publishes_per_s": rates}
        self.rows["isolation"].append(row)
        log(f"isolation {name}: {what}: Redis {fmt_list(samples, 1)} µs per publish on X's "
            f"shard, stream CPU-s A/B {stream}")


    # -- fan-out to workers -------------------------------------------------------------------

    def fanout(self, name: str, shards: Shards) -> None:
        """Redis CPU per publish against the number of connections subscribed to the channel
        (what each stream worker holding it has): plain subscriber connections that read and
        drop, on the load core, so that dozens of holders fit on this machine."""
        x = f"bench.fanout.{name}.x"
        index = shards.shard_of(x)
        holder = Node("fanout", self.workdir / name, shards, self.secret, self.publish_key)
        publisher = Publisher(holder, [x], self.tag("fanout"))
        command = "subscribe" if shards.url.startswith("redis://") else "ssubscribe"
        try:
            for holders in FANOUT_HOLDERS:
                drain = Process(f"drain-{name}-{holders}", base.pinned(LOAD_CORE, [
                    sys.executable, __file__, "--drain",
                    f"{shards.ports[index]},{command},{keys.live_channel(x)},{holders}"]),
                    holder.workdir, stdin=True)
                try:
                    drain.answer()
                    idle = self.idle_rate(shards, 1.5)
                    for batch in (ISOLATION_BATCH, 1):
                        seq0 = publisher.sequence()
                        cpu0, t0 = shards.cpu(), time.monotonic()
                        published = publisher.flood(self.plan.isolation_seconds, batch, 1)
                        cpu1, t1 = shards.cpu(), time.monotonic()
                        per_shard = shards.per_shard(self.counts(seq0, publisher.sequence()))
                        us = self.redis_us(shards, cpu0, cpu1, idle, t1 - t0, per_shard)[index]
                        row = {"topology": name, "holders": holders, "batch": batch,
                               "redis_us_per_publish": us,
                               "publishes_per_s": published["published"] / published["seconds"]}
                        self.rows["fanout"].append(row)
                        log(f"fanout {name}: {holders} holders, batch {batch}: {us:.1f} µs per "
                            f"publish, {row['publishes_per_s']:,.0f}/s")
                finally:
                    drain.stop()
        finally:
            publisher.stop()

    # -- memory ------------------------------------------------------------------------------

    def memory(self, name: str, shards: Shards) -> None:
        """Redis memory per log and per retained event (100-byte data). A new log's first
        listpack node is preallocated (4 KB in Redis 7), so a log's first event costs far more
        than the next ones: 50 logs get one event, then ~1,000 more each."""
        holder = Node("memory", self.workdir / name, shards, self.secret, self.publish_key)
        channels = [f"bench.memory.{name}.c{i}" for i in range(50)]
        publisher = Publisher(holder, channels, self.tag("memory"), core=SERVER_CORE)
        try:
            memory0 = shards.memory()
            publisher.pace(1, 0, "all")
            memory1 = shards.memory()
            result = publisher.flood(self.plan.flood_seconds, 100, 1)
            memory2 = shards.memory()
            row = {"topology": name, "channels": len(channels), "events": result["published"],
                   "bytes_per_new_log": (memory1 - memory0) / len(channels),
                   "bytes_per_event": (memory2 - memory1) / max(result["published"], 1)}
            self.rows["memory"].append(row)
            log(f"memory {name}: {row['bytes_per_new_log']:,.0f} B per new log, "
                f"{row['bytes_per_event']:.0f} B per further event")
        finally:
            publisher.stop()

    # -- proxy -------------------------------------------------------------------------------

    def proxy(self, name: str, shards: Shards) -> None:
        """The same streams through nginx (one worker, the stream location's settings of
        deploy/nginx): what nginx holds per idle stream and spends per delivery."""
        plan = self.plan
        node = self.node(shards, "proxied")
        nginx = Nginx(node.workdir, node.port)
        channels = [f"bench.proxy.{name}.c{i}" for i in range(plan.channels)]
        tag = self.tag("proxy")
        loadgen = self.clients(nginx.front(node), channels, plan.subscribers, tag)
        publisher = Publisher(node, channels, tag)
        try:
            rss0, node_rss0 = base.rss_kb(nginx.worker), node.rss()
            held = self.open([loadgen], [plan.subscribers], publisher)
            time.sleep(1.0)
            row = {"topology": name, "streams": held,
                   "nginx_kb_per_stream": (base.rss_kb(nginx.worker) - rss0) / max(held, 1),
                   "stream_kb_per_stream": (node.rss() - node_rss0) / max(held, 1),
                   "stream_base_rss_kb": node_rss0, "nginx_base_rss_kb": rss0, "steps": []}
            for rate in plan.rates:
                loadgen.ask("reset")
                cpu0 = base.cpu_seconds(nginx.worker), node.cpu()
                published = publisher.pace(rate, plan.seconds, "random")
                expected = published["published"] * (plan.subscribers // plan.channels)
                with contextlib.suppress(TimeoutError):
                    base.wait_until(lambda n=expected: loadgen.ask("report")["events"] >= n, 5,
                                    "delivery")
                cpu1 = base.cpu_seconds(nginx.worker), node.cpu()
                report = loadgen.ask("report")
                got = max(report["events"], 1)
                row["steps"].append({
                    "rate": rate, "received": report["events"], "expected": expected,
                    "p99_ms": report["p99_ms"],
                    "nginx_us_per_delivery": (cpu1[0] - cpu0[0]) / got * 1e6,
                    "stream_us_per_delivery": (cpu1[1] - cpu0[1]) / got * 1e6,
                })
            self.rows["proxy"].append(row)
            log(f"proxy {name}: {held} streams, nginx {row['nginx_kb_per_stream']:.2f} KB/stream "
                f"(stream process {row['stream_kb_per_stream']:.2f}); per delivery µs nginx/stream "
                + ", ".join(f"{st['nginx_us_per_delivery']:.1f}/{st['stream_us_per_delivery']:.1f}"
                            f" at {st['rate']}/s" for st in row["steps"]))
        finally:
            loadgen.stop()
            publisher.stop()
            nginx.stop()
            node.stop()


class Nginx:
    """nginx with one worker on the stream core in front of one stream process: the stream
    location's settings of deploy/nginx/nginx.conf.tmpl (no buffering, HTTP/1.1 upstream)."""

    def __init__(self, workdir: Path, upstream: int) -> None:
        self.port = base.free_port()
        conf = workdir / "nginx.conf"
        user = "user root root;" if os.geteuid() == 0 else ""
        conf.write_text(f"""{user}
worker_processes 1;
worker_rlimit_nofile 40000;
pid {workdir}/nginx.pid;
error_log {workdir}/nginx-error.log warn;
events {{ worker_connections 20000; }}
http {{
    access_log off;
    tcp_nodelay on;
    client_body_temp_path {workdir}/nginx-body;
    proxy_temp_path {workdir}/nginx-proxy;
    fastcgi_temp_path {workdir}/nginx-fastcgi;
    uwsgi_temp_path {workdir}/nginx-uwsgi;
    scgi_temp_path {workdir}/nginx-scgi;
    upstream eventgate_stream {{ server {LOOPBACK}:{upstream}; }}
    server {{
        listen {LOOPBACK}:{self.port};
        location /streams {{
            proxy_pass http://eventgate_stream;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_buffering off;
            proxy_cache off;
            gzip off;
            proxy_pass_header X-Accel-Buffering;
            proxy_read_timeout 1h;
            proxy_send_timeout 1h;
        }}
    }}
}}
""")
        binary = shutil.which("nginx") or "/usr/sbin/nginx"
        self.process = Process(f"nginx-{self.port}", base.pinned(SERVER_CORE, [
            binary, "-e", str(workdir / "nginx-error.log"), "-c", str(conf), "-g",
            "daemon off;"]), workdir)
        self.worker = base.wait_until(lambda: (base.children(self.process.popen.pid) or [0])[0],
                                      10, "nginx")

    def front(self, node: Node) -> Node:
        """``node`` as the load generator sees it through nginx."""
        return Front(node, self.port)

    def stop(self) -> None:
        self.process.stop()


class Front:
    """A stream process reached through nginx's port (what Loadgen reads of a server)."""

    def __init__(self, node: Node, port: int) -> None:
        self.workdir = node.workdir
        self.port = port
        self.paths = node.paths


def drain(spec: str) -> None:
    """``port,command,channel,count``: ``count`` connections subscribed to ``channel`` that
    read and drop what they get (the fan-out runs' holders); says ready once all are."""
    port, command, channel, count = spec.split(",")
    request = f"*2\r\n${len(command)}\r\n{command}\r\n${len(channel)}\r\n{channel}\r\n"
    sockets = []
    selector = selectors.DefaultSelector()
    for _ in range(int(count)):
        sock = socket.create_connection((LOOPBACK, int(port)))
        sock.sendall(request.encode())
        sock.recv(4096)  # the subscription's confirmation
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
        sockets.append(sock)
    print(json.dumps({"ready": len(sockets)}), flush=True)
    while True:
        for key, _ in selector.select():
            if not key.fileobj.recv(1 << 16):
                return


def log(message: str) -> None:
    base.log(message)


def fmt_list(values: list, digits: int) -> str:
    return "/".join("-" if v is None else f"{v:.{digits}f}" for v in values)


def report(rows: dict, command: str, minutes: float, before: str) -> str:
    out = [f"eventgate scaling bench — {command} — {minutes:.1f} min",
           f"machine: {before}",
           "2 cores: stream processes on core 0; loadgen, paced publisher and every redis-server "
           "on core 1 (the flood's publisher on core 0). Redis µs per event: per shard, "
           "idle CPU taken out."]
    out.append("\ndeliveries (2,000 subscribers on 200 channels, 10 per channel; random channel)")
    head = ("topology", "procs", "offered ev/s", "published ev/s", "deliveries/s",
            "stream CPU %", "deliveries/CPU-s", "p99 ms", "Redis µs/event per shard")
    lines = [head] + [(r["topology"], r["processes"], f"{r['rate']:,.0f}",
                       f"{r['published_per_s']:,.0f}", f"{r['deliveries_per_s']:,.0f}",
                       f"{r['stream_cpu_pct']:.0f}", f"{r['deliveries_per_cpu_s'] or 0:,.0f}",
                       f"{r['p99_ms']:.1f}", fmt_list(r["redis_us_per_event"], 1))
                      for r in rows["deliveries"]]
    out += columns(lines)
    out.append("\npublishes (one publisher thread, 1,000 channels nobody holds)")
    head = ("topology", "batch", "publishes/s", "Redis µs/event per shard",
            "Redis CPU % per shard")
    out += columns([head] + [(r["topology"], r["batch"], f"{r['publishes_per_s']:,.0f}",
                              fmt_list(r["redis_us_per_event"], 1),
                              fmt_list(r["redis_cpu_pct"], 0)) for r in rows["publishes"]])
    out.append("\nfan-out to workers (connections subscribed to X on its shard; events on X)")
    out += columns([("topology", "holders", "batch", "Redis µs per publish", "publishes/s")] + [
        (r["topology"], r["holders"], r["batch"], f"{r['redis_us_per_publish']:.1f}",
         f"{r['publishes_per_s']:,.0f}") for r in rows["fanout"]])
    for r in rows["memory"]:
        out.append(f"\nRedis memory ({r['topology']}, INFO used_memory): a log holding one event "
                   f"{r['bytes_per_new_log']:,.0f} B; each further event {r['bytes_per_event']:.0f}"
                   f" B ({r['events']:,} events on {r['channels']} logs)")
    out.append("\nisolation (2 stream processes; events on X only, batches of 100, one thread)")
    head = ("topology", "case", "Redis µs per publish on X's shard: median [each run]",
            "stream CPU-s A/B (first run)")
    out += columns([head] + [(r["topology"], r["case"],
                              f"{statistics.median(r['redis_us_per_publish']):.1f} "
                              f"[{fmt_list(r['redis_us_per_publish'], 1)}]",
                              "/".join(str(v) for v in r["stream_cpu_s"][0]))
                             for r in rows["isolation"]])
    for r in rows["proxy"]:
        out.append(f"\nthrough nginx (1 worker, core 0; {r['topology']}; {r['streams']:,} streams "
                   f"on 200 channels)")
        out.append(f"idle: nginx {r['nginx_kb_per_stream']:.2f} KB per stream, the stream "
                   f"process {r['stream_kb_per_stream']:.2f} KB per stream (RSS); with no stream: "
                   f"nginx worker {r['nginx_base_rss_kb'] / 1024:.1f} MB, stream process "
                   f"{r['stream_base_rss_kb'] / 1024:.1f} MB")
        out += columns([("offered ev/s", "delivered/expected", "p99 ms", "nginx µs/delivery",
                         "stream µs/delivery")] + [
            (f"{st['rate']:,}", f"{st['received']:,}/{st['expected']:,}", f"{st['p99_ms']:.1f}",
             f"{st['nginx_us_per_delivery']:.1f}", f"{st['stream_us_per_delivery']:.1f}")
            for st in r["steps"]])
    return "\n".join(out)


def columns(lines: list) -> list[str]:
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(lines[0]))]
    return [" | ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=True))
            for line in lines]


def run(plan: Plan, workdir: Path, loadgen: Path) -> dict:
    """Every topology of ``plan``; returns the rows (bench/run.py's ``--only scale`` calls it)."""
    bench = Run(plan, workdir, loadgen)
    for topology in plan.topologies:
        bench.topology(topology)
    (workdir / "scaling.json").write_text(json.dumps(bench.rows, indent=1))
    return bench.rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one rate, shorter steps")
    parser.add_argument("--drain", help=argparse.SUPPRESS)
    parser.add_argument("--topologies", default="",
                        help="comma-separated: single, cluster1, cluster3 (default: all)")
    args = parser.parse_args()
    if args.drain:
        drain(args.drain)
        return
    plan = QUICK if args.quick else FULL
    if args.topologies:
        plan.topologies = args.topologies.split(",")
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the children inherit it
    workdir = base.ROOT / "var" / "bench" / (time.strftime("%Y%m%d-%H%M%S") + "-scaling")
    workdir.mkdir(parents=True)
    binary = base.build(workdir)
    before = base.machine()
    started = time.monotonic()
    rows = run(plan, workdir, binary)
    command = " ".join([Path(sys.executable).name, "bench/scaling.py", *sys.argv[1:]])
    base.print_report(report(rows, command, (time.monotonic() - started) / 60, before),
                      workdir / "scaling.json")


if __name__ == "__main__":
    main()
