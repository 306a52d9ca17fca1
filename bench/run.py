"""The benchmark: eventgate's stream worker alone, the full path (the stack's nginx in front of
it), nchan and flask-sse 1.0, each on one server core.

``make bench`` (or ``.venv/bin/python bench/run.py [--quick] [--only S2,S3] [--servers …]``)
builds bench/loadgen.c, starts its own redis-server, and for each server under test one
``gunicorn -k gevent -w 1`` worker (behind nginx rendered from deploy/nginx for ``full``;
nginx with nchan for ``nchan``: bench/nginx_servers.py) pinned to core 0 with Redis, while the
load (loadgen, the paced publisher) runs on core 1. It samples the server's RSS and CPU seconds
from /proc (worker and nginx workers), repeats each point, and prints the full-path table, then
one table of every scenario: median [min–max] per server and ratios against nchan and flask-sse.
Everything listens on and connects to 127.0.0.1 only. Raw results go to var/bench/<time>/.
Scenarios with setups of their own add their tables: ``presence`` (what presence adds to a stream
open, bench/presence_opens.py; in the default run), ``scale`` and ``outbox`` (on request).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import json
import os
import platform
import resource
import secrets
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SERVER_CORE, LOAD_CORE = "0", "1"
LOOPBACK = "127.0.0.1"
TICK = os.sysconf("SC_CLK_TCK")

sys.path[:0] = [str(ROOT), str(ROOT / "bench")]  # also when loaded by runpy (the tests)
from nginx_servers import (  # noqa: E402
    Nginx,
    nchan_installed,
    render_full_path,
    write_nchan_conf,
)

from eventgate.shared.tokens import ChannelTokens  # noqa: E402


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def wait_until(check, timeout: float, what: str, interval: float = 0.05):  # noqa: ANN001
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except Exception as error:  # noqa: BLE001 - a server that is still starting
            last = error
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what} ({last!r})")


def pinned(core: str, args: list[str]) -> list[str]:
    return ["taskset", "-c", core, *args]


# -- processes ----------------------------------------------------------------------------------


class Process:
    def __init__(self, name: str, args: list[str], workdir: Path, env: dict | None = None,
                 stdin: bool = False) -> None:
        self.name = name
        self.log_path = workdir / f"{name}.log"
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen(
            args, cwd=ROOT, env={**os.environ, **(env or {})}, stderr=self._log,
            stdout=subprocess.PIPE if stdin else self._log,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL, text=stdin,
        )

    def ask(self, line: str) -> dict:
        assert self.popen.stdin and self.popen.stdout
        self.popen.stdin.write(line + "\n")
        self.popen.stdin.flush()
        return self.answer()

    def tell(self, line: str) -> None:
        assert self.popen.stdin
        self.popen.stdin.write(line + "\n")
        self.popen.stdin.flush()

    def answer(self) -> dict:
        assert self.popen.stdout
        text = self.popen.stdout.readline()
        if not text:
            raise RuntimeError(f"{self.name} exited: see {self.log_path}")
        return json.loads(text)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        self._log.close()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


class Redis:
    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.url = f"redis://{LOOPBACK}:{self.port}/0"
        data = workdir / "redis"
        data.mkdir(parents=True, exist_ok=True)
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        # The stack's persistence settings (AOF, fsync every second); room for flask-sse's
        # connection per stream.
        self.process = Process("redis", pinned(LOAD_CORE, [
            binary, "--port", str(self.port), "--bind", LOOPBACK, "--dir", str(data),
            "--save", "", "--appendonly", "yes", "--appendfsync", "everysec",
            "--maxclients", "19000", "--logfile", "",
        ]), workdir)
        import redis

        self.client = redis.Redis.from_url(self.url)
        wait_until(self.client.ping, 10, "redis")

    def stop(self) -> None:
        self.process.stop()


@dataclass
class Server:
    """One gunicorn gevent worker under test, pinned to the server core."""

    name: str
    workdir: Path
    redis: Redis
    secret: str
    publish_key: str
    port: int = 0
    process: Process | None = None
    worker: int = 0
    notes: list = field(default_factory=list)

    def gunicorn_args(self) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict:
        return {}

    def health_path(self) -> str:
        raise NotImplementedError

    def binds(self) -> list[str]:
        return [f"{LOOPBACK}:{self.port}"]

    def start(self) -> Server:
        self.port = self.port or free_port()
        binds = [arg for bind in self.binds() for arg in ("--bind", bind)]
        self.process = Process(f"{self.name}-{self.port}", pinned(SERVER_CORE, [
            str(BIN / "gunicorn"), *self.gunicorn_args(), "--worker-class", "gevent",
            "--workers", "1", *binds, "--keep-alive", "0",
            "--max-requests", "0", "--worker-connections", "20000", "--timeout", "30",
            "--graceful-timeout", "5", "--control-socket",
            str(self.workdir / f"{self.name}-{self.port}.ctl"),
        ]), self.workdir, self.env())
        self.worker = wait_until(self._healthy_worker, 30, f"{self.name} to start", 0.1)
        return self

    def _healthy_worker(self) -> int:
        url = f"http://{LOOPBACK}:{self.port}{self.health_path()}"
        with urllib.request.urlopen(url, timeout=2) as response:
            body = json.loads(response.read())
        if body.get("redis_connected") is False:
            return 0
        pids = children(self.process.popen.pid)
        return pids[0] if len(pids) == 1 else 0

    def stop(self) -> None:
        if self.process:
            self.process.stop()
            self.process = None

    def kill_worker(self) -> int:
        """SIGKILL the worker (gunicorn's master forks a new one); returns the old pid."""
        old = self.worker
        os.kill(old, signal.SIGKILL)
        return old

    def wait_new_worker(self, old: int) -> None:
        def new() -> int:
            pids = [p for p in children(self.process.popen.pid) if p != old]
            return pids[0] if pids else 0

        self.worker = wait_until(new, 30, "a new worker")

    def cpu(self) -> float:
        return cpu_seconds(self.worker)

    def rss(self) -> int:
        return rss_kb(self.worker)

    def rss_parts(self) -> dict[str, int]:
        """RSS per process kind, where a server has several (nginx in front of a worker)."""
        return {"worker": self.rss()}

    def cpu_parts(self) -> dict[str, float]:
        return {"worker": self.cpu()}

    def paths(self, channels: list[str]) -> list[str]:
        raise NotImplementedError

    def publisher_args(self) -> list[str]:
        raise NotImplementedError


class Eventgate(Server):
    def gunicorn_args(self) -> list[str]:
        # The flags of deploy/supervisor/supervisord.conf.tmpl (worker count and port aside).
        return ["eventgate.stream.wsgi:app", "-c", "python:eventgate.stream.gunicorn_conf"]

    def env(self) -> dict:
        return {
            "EVENTGATE_SECRET_KEY": self.secret,
            "EVENTGATE_PUBLISH_KEY": self.publish_key,
            "EVENTGATE_REDIS_URL": self.redis.url,
            "EVENTGATE_VAR_DIR": str(self.workdir / "var"),
            # The bench measures what one worker holds: the admission limit must not decide it.
            "EVENTGATE_MAX_STREAMS_PER_WORKER": "19000",
        }

    def health_path(self) -> str:
        return "/streams/healthz"

    def paths(self, channels: list[str]) -> list[str]:
        tokens = ChannelTokens((self.secret,), max_ttl_seconds=86400)
        return [f"/streams?token={tokens.issue([ch], ttl=7200)[0]}" for ch in channels]

    def publisher_args(self) -> list[str]:
        return ["--target", "publisher", "--redis-url", self.redis.url]


class FlaskSse(Server):
    def gunicorn_args(self) -> list[str]:
        return ["--pythonpath", str(ROOT / "bench"), "flask_sse_app:app"]

    def env(self) -> dict:
        return {"BENCH_REDIS_URL": self.redis.url}

    def health_path(self) -> str:
        return "/healthz"

    def paths(self, channels: list[str]) -> list[str]:
        return [f"/stream?channel={ch}" for ch in channels]

    def publisher_args(self) -> list[str]:
        return ["--target", "flask-sse", "--redis-url", self.redis.url]


class FullPath(Eventgate):
    """The stack's nginx (its rendered config) in front of one stream worker, both on the server
    core: the path a browser's stream takes. CPU and memory are the worker's plus nginx's."""

    nginx: Nginx | None = None
    stream_binds: tuple = ()

    def binds(self) -> list[str]:
        return list(self.stream_binds)

    def start(self) -> FullPath:
        nginx_port, self.port = free_port(), free_port()
        conf, binds = render_full_path(self.workdir / f"full-{nginx_port}", nginx_port,
                                       self.port, free_port())
        self.stream_binds = tuple(binds)
        super().start()  # the worker, healthy on its own port
        self.port = nginx_port
        self.nginx = Nginx(conf, self.workdir, SERVER_CORE, f"nginx-full-{self.port}")
        self.worker = wait_until(self._healthy_worker, 30, "nginx in front of the worker", 0.1)
        return self

    def cpu(self) -> float:
        return sum(self.cpu_parts().values())

    def cpu_parts(self) -> dict[str, float]:
        return {"worker": super().cpu(),
                "nginx": sum(cpu_seconds(pid) for pid in self.nginx.workers())}

    def rss(self) -> int:
        return sum(self.rss_parts().values())

    def rss_parts(self) -> dict[str, int]:
        return {"worker": super().rss(),
                "nginx": sum(rss_kb(pid) for pid in self.nginx.workers())}

    def stop(self) -> None:
        if self.nginx:
            self.nginx.stop()
            self.nginx = None
        super().stop()


class Nchan(Server):
    """nginx with nchan (Debian's libnginx-mod-nchan): subscribers on /sub (EventSource), the
    publisher POSTs to /pub. CPU and memory are every nginx worker's (its store is in their
    shared memory)."""

    def start(self) -> Nchan:
        self.port = free_port()
        conf = write_nchan_conf(self.workdir / f"nchan-{self.port}", self.port)
        self.process = Nginx(conf, self.workdir, SERVER_CORE, f"nchan-{self.port}")
        self.worker = wait_until(self._healthy_worker, 30, "nchan to start", 0.1)
        return self

    def health_path(self) -> str:
        return "/healthz"

    def _healthy_worker(self) -> int:
        with urllib.request.urlopen(f"http://{LOOPBACK}:{self.port}/healthz", timeout=2):
            pass
        workers = self.process.workers()
        return workers[0] if workers else 0

    def cpu(self) -> float:
        return sum(cpu_seconds(pid) for pid in self.process.workers())

    def rss(self) -> int:
        return sum(rss_kb(pid) for pid in self.process.workers())

    def paths(self, channels: list[str]) -> list[str]:
        return [f"/sub?channel={ch}" for ch in channels]

    def publisher_args(self) -> list[str]:
        return ["--target", "nchan", "--http-port", str(self.port)]


SERVERS = {"eventgate": Eventgate, "full": FullPath, "nchan": Nchan, "flask-sse": FlaskSse}


class Loadgen:
    def __init__(self, binary: Path, server: Server, channels: list[str], conns: int, tag: str,
                 reconnect: bool = False, window: int = 256, start: int | None = None) -> None:
        self.server = server
        paths_file = server.workdir / f"paths-{tag}.txt"
        paths_file.write_text("\n".join(server.paths(channels)) + "\n")
        args = [str(binary), "--port", str(server.port), "--paths", str(paths_file),
                "--conns", str(conns), "--window", str(window)]
        if start is not None:
            args += ["--start", str(start)]
        if isinstance(server, FlaskSse):
            args.append("--window-on-connect")  # it answers a stream only with its first event
        if reconnect:
            args.append("--reconnect")
        self.process = Process(f"loadgen-{tag}", pinned(LOAD_CORE, args), server.workdir,
                               stdin=True)

    def ask(self, command: str) -> dict:
        return self.process.ask(command)

    def stop(self) -> None:
        if self.process.popen.poll() is None:
            try:
                self.process.ask("close")
                self.process.tell("quit")
                self.process.popen.wait(10)
            except (OSError, RuntimeError, subprocess.TimeoutExpired):
                pass
        self.process.stop()


class Publisher:
    def __init__(self, server: Server, channels: list[str], tag: str, extra: list | None = None,
                 core: str = LOAD_CORE):
        channels_file = server.workdir / f"channels-{tag}.txt"
        channels_file.write_text("\n".join(channels) + "\n")
        args = [sys.executable, str(ROOT / "bench" / "publish.py"), *server.publisher_args(),
                "--channels", str(channels_file), *(extra or [])]
        self.process = Process(f"publish-{tag}", pinned(core, args), server.workdir, stdin=True)
        self.process.answer()

    def pace(self, rate: float, seconds: float, pick: str = "first") -> dict:
        return self.check(self.process.ask(json.dumps(
            {"cmd": "pace", "rate": rate, "seconds": seconds, "pick": pick})))

    def start_pace(self, rate: float, seconds: float, pick: str = "first") -> None:
        self.process.tell(json.dumps({"cmd": "pace", "rate": rate, "seconds": seconds,
                                      "pick": pick}))

    def result(self) -> dict:
        return self.check(self.process.answer())

    def sequence(self) -> dict[str, int]:
        """The last sequence number published on each channel."""
        return self.check(self.process.ask(json.dumps({"cmd": "seq"})))["seq"]

    def flood(self, seconds: float, batch: int, threads: int) -> dict:
        return self.check(self.process.ask(json.dumps(
            {"cmd": "flood", "seconds": seconds, "batch": batch, "threads": threads})))

    @staticmethod
    def check(answer: dict) -> dict:
        if "error" in answer:
            raise RuntimeError(f"publisher: {answer['error']}")
        return answer

    def stop(self) -> None:
        self.process.stop()


# -- scenarios -------------------------------------------------------------------------------


@dataclass
class Plan:
    repeats: int
    s1_counts: list
    s2_subs: list
    s2_ladder: list  # deliveries/s
    s2_seconds: float
    s3_rates: list
    s3_seconds: float
    s4_subs: int
    s4_rate: float
    publish_seconds: float


FULL = Plan(3, [1000, 5000, 10000], [1000, 5000],
            [10_000, 25_000, 50_000, 100_000, 150_000, 200_000, 300_000, 400_000, 500_000,
             600_000], 3.0,
            [5000, 10000], 4.0, 5000, 10.0, 4.0)
QUICK = Plan(1, [1000, 5000], [5000], [25_000, 50_000, 100_000, 150_000, 300_000], 2.0,
             [10000], 3.0, 2000, 10.0, 3.0)


class Bench:
    def __init__(self, plan: Plan, workdir: Path, loadgen: Path,
                 web_flags: list[str] | None = None, redis_core: str = SERVER_CORE) -> None:
        self.plan = plan
        self.redis_core = redis_core
        self.web_flags = web_flags or []
        self.workdir = workdir
        self.loadgen = loadgen
        self.redis = Redis(workdir)
        self.secret = secrets.token_urlsafe(32)
        self.publish_key = secrets.token_urlsafe(32)
        self.results: dict = {}
        self.counter = 0

    def server(self, kind: str) -> Server:
        # The set-up: the server and its Redis share one core, the load has the other.
        os.sched_setaffinity(self.redis.process.popen.pid, {int(self.redis_core)})
        return SERVERS[kind](kind, self.workdir, self.redis, self.secret,
                             self.publish_key).start()

    def tag(self, what: str) -> str:
        self.counter += 1
        return f"{what}-{self.counter}"

    def record(self, kind: str, key: str, value) -> None:  # noqa: ANN001
        self.results.setdefault(kind, {}).setdefault(key, []).append(value)

    # S1 -------------------------------------------------------------------------------------

    def s1(self, kind: str) -> None:
        for repeat in range(self.plan.repeats):
            server = self.server(kind)
            tag = self.tag(f"s1-{kind}")
            channel = f"bench.s1.{tag}"
            publisher = Publisher(server, [channel], tag)
            counts = self.plan.s1_counts
            loadgen = Loadgen(self.loadgen, server, [channel], max(counts), tag, start=0)
            try:
                held_before = self._prewarm(server, loadgen, publisher)
                base_rss = server.rss()
                base_parts = server.rss_parts()
                for count in counts:
                    cpu0 = server.cpu()
                    held, seconds = self._open(server, loadgen, publisher, count)
                    cpu1 = server.cpu()
                    time.sleep(1.0)
                    rss = server.rss()
                    parts = server.rss_parts()
                    new = held - held_before
                    log(f"S1 {kind} #{repeat + 1}: {held}/{count} streams held, "
                        f"{(rss - base_rss) / max(held, 1):.2f} KB/stream, "
                        f"{(cpu1 - cpu0) / max(new, 1) * 1e3:.3f} ms CPU/accept, {seconds:.1f}s"
                        + "".join(f", {name} {(kb - base_parts.get(name, 0)) / max(held, 1):.2f}"
                                  for name, kb in parts.items() if len(parts) > 1))
                    for name, kb in parts.items():
                        if len(parts) > 1:
                            self.record(kind, f"s1.{count}.kb_per_stream.{name}",
                                        (kb - base_parts.get(name, 0)) / max(held, 1))
                    self.record(kind, f"s1.{count}.held", held)
                    if held < count:
                        self.record(kind, f"s1.{count}.fail", self._why_short(server, loadgen))
                        break
                    self.record(kind, f"s1.{count}.kb_per_stream", (rss - base_rss) / held)
                    self.record(kind, f"s1.{count}.ms_per_accept", (cpu1 - cpu0) / new * 1e3)
                    held_before = held
            finally:
                loadgen.stop()
                publisher.stop()
                server.stop()

    def _prewarm(self, server: Server, loadgen: Loadgen, publisher: Publisher) -> int:
        """A few streams first: the baseline RSS then holds what any first stream loads, and the
        channels are subscribed and live before the crowd arrives."""
        held, _ = self._open(server, loadgen, publisher, 10)
        time.sleep(0.5)
        return held

    def _open(self, server: Server, loadgen: Loadgen, publisher: Publisher, count: int):
        """Open streams up to ``count`` and wait until each got one event; returns (held, s)."""
        start = time.monotonic()
        loadgen.ask(f"open {count}")
        progress = {"mark": -1, "since": time.monotonic()}

        def all_sent() -> bool:
            stats = loadgen.ask("stats")
            settled = stats["unstarted"] == 0 and stats["connecting"] == 0
            if not isinstance(server, FlaskSse):
                settled = settled and stats["answered"] + stats["done"] >= count
            # A server out of descriptors stops taking connections: give up after 10 s of that.
            mark = stats["head"] + stats["body"] + stats["done"]
            if mark != progress["mark"]:
                progress.update(mark=mark, since=time.monotonic())
            return settled or time.monotonic() - progress["since"] > 10

        with contextlib.suppress(TimeoutError):
            wait_until(all_sent, 120, f"{count} streams to open", 0.1)
        self._idle(server)
        got = -1
        for _ in range(6):
            publisher.pace(1, 0, "all")
            try:
                wait_until(lambda: loadgen.ask("stats")["with_events"] >= count, 5,
                           "every stream's first event", 0.1)
                break
            except TimeoutError:
                now = loadgen.ask("stats")["with_events"]
                if server.process.popen.poll() is not None or now == got:
                    break
                got = now
                self._idle(server)
        stats = loadgen.ask("stats")
        return stats["with_events"], time.monotonic() - start

    def _idle(self, server: Server, timeout: float = 30) -> None:
        """Wait until the worker stops burning CPU (the last accepts are processed)."""
        deadline = time.monotonic() + timeout
        last = server.cpu()
        while time.monotonic() < deadline:
            time.sleep(0.3)
            now = server.cpu()
            if now - last < 0.02:
                return
            last = now

    def _why_short(self, server: Server, loadgen: Loadgen) -> str:
        text = server.process.log_path.read_text(errors="replace")
        for needle, why in (("Too many open files", "EMFILE: out of file descriptors"),
                            ("max number of clients", "Redis refused more clients"),
                            ("Error", "errors in the server log")):
            if needle in text:
                return why
        stats = loadgen.ask("stats")
        return f"{stats['with_events']} streams got events ({stats['bad_status']} refused)"

    # S2 / S3: paced publishing and latency ------------------------------------------------

    def _step(self, server: Server, loadgen: Loadgen, publisher: Publisher, rate: float,
              seconds: float, pick: str, per_event: int, drain: float = 5.0) -> dict:
        before = loadgen.ask("report")
        loadgen.ask("reset")
        cpu0 = server.cpu_parts()
        load0 = cpu_seconds(loadgen.process.popen.pid)
        published = publisher.pace(rate, seconds, pick)
        expected = published["published"] * per_event
        with contextlib.suppress(TimeoutError):
            wait_until(lambda: loadgen.ask("report")["events"] >= expected, drain, "delivery")
        cpu1 = server.cpu_parts()
        load1 = cpu_seconds(loadgen.process.popen.pid)
        report = loadgen.ask("report")
        parts = {name: round(cpu1[name] - cpu0.get(name, 0.0), 3) for name in cpu1}
        return {
            "cpu_parts": parts if len(parts) > 1 else {},
            "loadgen_cpu_s": load1 - load0,
            "drops": report["drops"] - before["drops"],
            "rate": rate, "published": published["published"],
            "publish_seconds": published["seconds"], "expected": expected,
            "received": report["events"], "p50_ms": report["p50_ms"],
            "p99_ms": report["p99_ms"], "max_ms": report["max_ms"], "gaps": report["gaps"],
            "dups": report["dups"], "cpu_s": sum(parts.values()),
            "deliveries_per_s": expected / max(published["seconds"], 1e-9),
            "publisher_lag_ms": published["max_lag_ms"],
        }

    def _connect(self, server: Server, loadgen: Loadgen, publisher: Publisher, count: int) -> int:
        self._prewarm(server, loadgen, publisher)
        held, _ = self._open(server, loadgen, publisher, count)
        return held

    def s2(self, kind: str) -> None:
        for subs in self.plan.s2_subs:
            server = self.server(kind)
            tag = self.tag(f"s2-{kind}-{subs}")
            channel = f"bench.s2.{tag}"
            publisher = Publisher(server, [channel], tag)
            loadgen = Loadgen(self.loadgen, server, [channel], subs, tag, reconnect=True, start=0)
            try:
                held = self._connect(server, loadgen, publisher, subs)
                if held < subs:
                    self.record(kind, f"s2.{subs}.fail", f"only {held}/{subs} streams opened")
                    continue
                for repeat in range(self.plan.repeats):
                    best = best_1s = None
                    misses = 0
                    for index, deliveries in enumerate(self.plan.s2_ladder):
                        rate = deliveries / subs
                        step = self._step(server, loadgen, publisher, rate,
                                          self.plan.s2_seconds, "first", subs)
                        held_1s = (step["received"] >= step["expected"] and step["gaps"] == 0
                                   and step["p99_ms"] <= 1000)
                        ok = held_1s and step["p99_ms"] <= 100
                        step["ok"] = ok
                        self.record(kind, f"s2.{subs}.steps", step)
                        if index == 0:  # the same offered rate for every server: comparable
                            self.record(kind, f"s2.{subs}.cpu_per_100k_first",
                                        step["cpu_s"] / max(step["received"], 1) * 1e5)
                        if held_1s:  # the same offered rates for every server: comparable
                            self.record(kind, f"s2.{subs}.at.{deliveries}.cpu_per_100k",
                                        step["cpu_s"] / step["expected"] * 1e5)
                            self.record(kind, f"s2.{subs}.at.{deliveries}.p99",
                                        step["p99_ms"])
                            best_1s = step
                        log(f"S2 {kind} {subs} subs #{repeat + 1}: {deliveries}/s offered: "
                            f"{step['received']}/{step['expected']} p99 {step['p99_ms']:.1f} ms"
                            f" p50 {step['p50_ms']:.1f} ms cpu {step['cpu_s']:.2f}s "
                            + "".join(f"{k} {v:.2f}s " for k, v in step["cpu_parts"].items())
                            + f"(loadgen {step['loadgen_cpu_s']:.2f}s)"
                            f" drops {step['drops']} "
                            f"{'ok' if ok else 'FAIL'}")
                        if ok:
                            best = step
                            misses = 0
                            continue
                        if held_1s:  # climbing on for the most held with p99 <= 1 s
                            continue
                        self._settle(server, loadgen)
                        # Coalescing makes a worker more efficient as the rate rises, so one
                        # p99 above the bound is not yet the end; falling behind (events not
                        # delivered within the drain time) or two misses in a row is.
                        misses += 1
                        if step["received"] < step["expected"] or misses == 2:
                            break
                    if best_1s is not None:
                        self.record(kind, f"s2.{subs}.max_deliveries_1s",
                                    best_1s["deliveries_per_s"])
                        self.record(kind, f"s2.{subs}.p99_at_max_1s", best_1s["p99_ms"])
                    if best is None:
                        self.record(kind, f"s2.{subs}.fail",
                                    f"no rate sustained (from {self.plan.s2_ladder[0]}/s)")
                        continue
                    self.record(kind, f"s2.{subs}.max_deliveries", best["deliveries_per_s"])
                    self.record(kind, f"s2.{subs}.p99_at_max", best["p99_ms"])
                    self.record(kind, f"s2.{subs}.cpu_per_100k",
                                best["cpu_s"] / best["expected"] * 1e5)
            finally:
                loadgen.stop()
                publisher.stop()
                server.stop()

    def _settle(self, server: Server, loadgen: Loadgen) -> None:
        """After an overload, let the worker finish what it queued before the next ladder."""
        self._idle(server, 60)

    def s3(self, kind: str) -> None:
        count = 2000
        server = self.server(kind)
        tag = self.tag(f"s3-{kind}")
        channels = [f"bench.s3.{tag}.c{i}" for i in range(count)]
        publisher = Publisher(server, channels, tag)
        loadgen = Loadgen(self.loadgen, server, channels, count, tag, reconnect=True, start=0)
        try:
            held = self._connect(server, loadgen, publisher, count)
            if held < count:
                self.record(kind, "s3.fail", f"only {held}/{count} streams opened")
                return
            for repeat in range(self.plan.repeats):
                for rate in self.plan.s3_rates:
                    step = self._step(server, loadgen, publisher, rate, self.plan.s3_seconds,
                                      "random", 1)
                    ok = step["received"] >= step["expected"] and step["gaps"] == 0
                    log(f"S3 {kind} #{repeat + 1}: {rate} ev/s: {step['received']}/"
                        f"{step['expected']} p99 {step['p99_ms']:.2f} ms cpu {step['cpu_s']:.2f}s")
                    self.record(kind, f"s3.{rate}.steps", step)
                    if ok:
                        self.record(kind, f"s3.{rate}.p99", step["p99_ms"])
                        self.record(kind, f"s3.{rate}.cpu_per_100k",
                                    step["cpu_s"] / step["expected"] * 1e5)
                    else:
                        self.record(kind, f"s3.{rate}.fail",
                                    f"{step['received']}/{step['expected']} delivered "
                                    f"(p99 {step['p99_ms']:.0f} ms)")
                        self._settle(server, loadgen)
        finally:
            loadgen.stop()
            publisher.stop()
            server.stop()

    # S4 ---------------------------------------------------------------------------------------

    def s4(self, kind: str, repeats: int | None = None) -> None:
        subs, rate = self.plan.s4_subs, self.plan.s4_rate
        for repeat in range(repeats or self.plan.repeats):
            server = self.server(kind)
            tag = self.tag(f"s4-{kind}")
            channel = f"bench.s4.{tag}"
            publisher = Publisher(server, [channel], tag)
            loadgen = Loadgen(self.loadgen, server, [channel], subs, tag, reconnect=True,
                              window=1024, start=0)
            try:
                held = self._connect(server, loadgen, publisher, subs)
                if held < subs:
                    self.record(kind, "s4.fail", f"only {held}/{subs} streams opened")
                    continue
                loadgen.ask("reset")
                loadgen.ask("arm")
                seconds = 16.0
                publisher.start_pace(rate, seconds)
                time.sleep(2.0)
                old = server.kill_worker()
                killed_at = time.time()
                server.wait_new_worker(old)
                publisher.result()
                final = publisher.sequence()[channel]

                def done(loadgen: Loadgen = loadgen, final: int = final) -> bool:
                    report = loadgen.ask("report")
                    return report["resuming"] == 0 and report["min_last_seq"] >= final

                with contextlib.suppress(TimeoutError):
                    wait_until(done, 20, "every stream to catch up", 0.2)
                report = loadgen.ask("report")
                resumed = report["resuming"] == 0 and report["min_last_seq"] >= final
                seconds_to_resume = (report["last_resume_us"] / 1e6 - killed_at
                                     if report["last_resume_us"] else float("nan"))
                log(f"S4 {kind} #{repeat + 1}: drops {report['drops']} reconnects "
                    f"{report['reconnects']} gaps {report['gaps']} dups {report['dups']} "
                    f"lost {report['lost']} all resumed {resumed} in {seconds_to_resume:.2f}s "
                    f"(min seq {report['min_last_seq']}/{final})")
                self.record(kind, "s4.gaps", report["gaps"])
                self.record(kind, "s4.dups", report["dups"])
                self.record(kind, "s4.lost_events", report["lost"])
                if resumed:
                    self.record(kind, "s4.resume_s", seconds_to_resume)
                else:
                    self.record(kind, "s4.fail", f"{report['resuming']} streams not resumed, "
                                f"{report['gaps']} events missed")
            finally:
                loadgen.stop()
                publisher.stop()
                server.stop()

    # publish ------------------------------------------------------------------------------------

    def publish(self) -> None:
        port = free_port()
        env = {
            "EVENTGATE_SECRET_KEY": self.secret, "EVENTGATE_PUBLISH_KEY": self.publish_key,
            "EVENTGATE_REDIS_URL": self.redis.url,
            "EVENTGATE_VAR_DIR": str(self.workdir / "var"),
            # Metrics as the stack keeps them (one mmap file per process).
            "PROMETHEUS_MULTIPROC_DIR": str(self.workdir / f"metrics-web-{port}"),
        }
        web = Process(f"web-{port}", pinned(SERVER_CORE, [
            str(BIN / "gunicorn"), "eventgate.web.wsgi:app", *WEB_FLAGS, *self.web_flags,
            "--bind", f"{LOOPBACK}:{port}",
            "--workers", "1", "--control-socket", str(self.workdir / f"web-{port}.ctl"),
        ]), self.workdir, env)
        tag = self.tag("publish")
        channels = [f"bench.pub.{tag}.c{i}" for i in range(100)]
        try:
            wait_until(lambda: urllib.request.urlopen(f"http://{LOOPBACK}:{port}/healthz",
                                                      timeout=2).status == 200, 30, "web")
            worker = children(web.popen.pid)[0]
            channels_file = self.workdir / f"channels-{tag}.txt"
            channels_file.write_text("\n".join(channels) + "\n")
            client = Process(f"publish-{tag}", pinned(LOAD_CORE, [
                sys.executable, str(ROOT / "bench" / "publish.py"), "--target", "http",
                "--http-port", str(port), f"--publish-key={self.publish_key}",  # may begin with "-"
                "--channels", str(channels_file),
            ]), self.workdir, stdin=True)
            client.answer()
            for repeat in range(self.plan.repeats):
                for batch, keepalive, key in PUBLISH_POINTS:
                    cpu0 = cpu_seconds(worker)
                    result = Publisher.check(client.ask(json.dumps(
                        {"cmd": "flood", "seconds": self.plan.publish_seconds, "batch": batch,
                         "threads": 2, "keepalive": keepalive})))
                    cpu1 = cpu_seconds(worker)
                    rate = result["published"] / result["seconds"]
                    requests = result["published"] / batch
                    log(f"publish {key} #{repeat + 1}: {rate:.0f} events/s, "
                        f"{result['failures']} failed, web worker cpu "
                        f"{(cpu1 - cpu0) / result['seconds'] * 100:.0f}%, "
                        f"{(cpu1 - cpu0) / max(requests, 1) * 1e6:.0f} µs per request")
                    if result["failures"]:
                        self.record("eventgate", f"publish.{key}.fail",
                                    f"{result['failures']} requests refused")
                    self.record("eventgate", f"publish.{key}", rate)
            client.stop()
        finally:
            web.stop()


# The web program's flags in deploy/supervisor/supervisord.conf.tmpl (workers, port and control
# socket aside; tests/ops/test_rendered_configs.py checks they agree): the bench measures the
# worker the stack runs, access log included (to its log file here, to supervisord there).
WEB_FLAGS = [
    "-c", "python:eventgate.web.gunicorn_conf",
    "--worker-class", "eventgate.web.worker.WebWorker", "--threads", "4",
    "--keep-alive", "75", "--timeout", "30", "--graceful-timeout", "10",
    "--access-logfile", "-",
    "--access-logformat", '%(t)s %({x-request-id}i)s "%(m)s %(U)s %(H)s" %(s)s %(b)s %(M)sms',
]
# (events per request, keep-alive, result key). Kept-alive connections are what nginx's upstream
# pool gives the web tier; a connection per request is kept as a row of its own (a client
# without keep-alive straight on the port, or the sync worker of before).
PUBLISH_POINTS = [
    (1, True, "single"), (100, True, "batch100"),
    (1, False, "single_close"), (100, False, "batch100_close"),
]


# -- the table ----------------------------------------------------------------------------------


def summary(values: list) -> tuple[float, float, float] | None:
    numbers = [v for v in values if isinstance(v, (int, float))]
    if not numbers:
        return None
    return statistics.median(numbers), min(numbers), max(numbers)


def fmt(stats: tuple | None, digits: int) -> str:
    if stats is None:
        return ""
    med, low, high = stats
    if digits == 0:
        return f"{med:,.0f} [{low:,.0f}–{high:,.0f}]"
    return f"{med:.{digits}f} [{low:.{digits}f}–{high:.{digits}f}]"


# (label, key, digits, lower is better, target, target check)
ROWS = [
    ("S1 1k idle: KB per stream", "s1.1000.kb_per_stream", 2, True, "≤ 10", lambda v: v <= 10),
    ("S1 1k idle: ms CPU per accept", "s1.1000.ms_per_accept", 3, True, "≤ 0.2",
     lambda v: v <= 0.2),
    ("S1 5k idle: KB per stream", "s1.5000.kb_per_stream", 2, True, "≤ 10", lambda v: v <= 10),
    ("S1 5k idle: ms CPU per accept", "s1.5000.ms_per_accept", 3, True, "≤ 0.2",
     lambda v: v <= 0.2),
    ("S1 10k idle: streams held", "s1.10000.held", 0, False, "10,000", lambda v: v >= 10000),
    ("S1 10k idle: KB per stream", "s1.10000.kb_per_stream", 2, True, "≤ 10", lambda v: v <= 10),
    ("S1 10k idle: ms CPU per accept", "s1.10000.ms_per_accept", 3, True, "≤ 0.2",
     lambda v: v <= 0.2),
    ("S2 1k subs: deliveries/s, p99 ≤ 100 ms", "s2.1000.max_deliveries", 0, False, "", None),
    ("S2 1k subs: p99 ms at that rate", "s2.1000.p99_at_max", 1, True, "", None),
    ("S2 1k subs: CPU-s per 100k deliveries", "s2.1000.cpu_per_100k", 2, True, "≤ 0.9",
     lambda v: v <= 0.9),
    ("S2 1k subs: CPU-s per 100k at the first rate", "s2.1000.cpu_per_100k_first", 2, True, "",
     None),
    ("S2 5k subs: deliveries/s, p99 ≤ 100 ms", "s2.5000.max_deliveries", 0, False, "≥ 150,000",
     lambda v: v >= 150_000),
    ("S2 5k subs: p99 ms at that rate", "s2.5000.p99_at_max", 1, True, "≤ 100",
     lambda v: v <= 100),
    ("S2 5k subs: CPU-s per 100k deliveries", "s2.5000.cpu_per_100k", 2, True, "≤ 0.9",
     lambda v: v <= 0.9),
    ("S2 5k subs: CPU-s per 100k at the first rate", "s2.5000.cpu_per_100k_first", 2, True, "",
     None),
    ("S3 2k channels, 5k ev/s: p99 ms", "s3.5000.p99", 2, True, "", None),
    ("S3 2k channels, 10k ev/s: p99 ms", "s3.10000.p99", 2, True, "≤ 5", lambda v: v <= 5),
    ("S3 2k channels, 10k ev/s: CPU-s per 100k", "s3.10000.cpu_per_100k", 2, True, "", None),
    ("S4 reconnect storm: seconds to all resumed", "s4.resume_s", 2, True, "≤ 10",
     lambda v: v <= 10),
    ("S4 reconnect storm: gaps", "s4.gaps", 0, True, "0", lambda v: v == 0),
    ("S4 reconnect storm: duplicates", "s4.dups", 0, True, "0", lambda v: v == 0),
    ("publish: POST /api/events, single, ev/s", "publish.single", 0, False, "≥ 3,000",
     lambda v: v >= 3000),
    ("publish: POST /api/events, batches of 100, ev/s", "publish.batch100", 0, False,
     "≥ 30,000", lambda v: v >= 30000),
    ("publish, a connection per request: single, ev/s", "publish.single_close", 0, False, "",
     None),
    ("publish, a connection per request: batches of 100", "publish.batch100_close", 0, False,
     "", None),
]

# The publish scenario measures eventgate's web worker alone (in the eventgate column).
NOT_APPLICABLE = dict.fromkeys(
    ("publish.single", "publish.batch100", "publish.single_close", "publish.batch100_close"),
    "n/a: the web worker's figure",
)


def failure(results: dict, key: str) -> str | None:
    prefix = key.rsplit(".", 1)[0]
    for candidate in (f"{key}.fail", f"{prefix}.fail"):
        if results.get(candidate):
            return "fails: " + results[candidate][0]
    return None


SHORT = {"eventgate": "eg", "full": "full", "nchan": "nchan", "flask-sse": "fs"}


def ratio_pairs(kinds: list[str]) -> list[tuple[str, str]]:
    """(ours, theirs) for every ratio column: eventgate's servers against each comparison."""
    ours = [k for k in ("full", "eventgate") if k in kinds]
    theirs = [k for k in ("nchan", "flask-sse") if k in kinds]
    return [(a, b) for a in ours for b in theirs]


def render_rows(head: list[str], lines: list[list[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [head, *lines]) for i in range(len(head))]
    out = [" | ".join(str(c).ljust(w) for c, w in zip(head, widths, strict=True))]
    out.append("-+-".join("-" * w for w in widths))
    out += [" | ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) for r in lines]
    return "\n".join(out)


def cells(results: dict, kinds: list[str], key: str, digits: int) -> tuple[list[str], dict]:
    """One row's text per server, and its (median, min, max) per server."""
    row, stats = [], {}
    for kind in kinds:
        got = results.get(kind, {})
        stats[kind] = summary(got.get(key, []))
        text = fmt(stats[kind], digits)
        fail = failure(got, key)
        if kind != "eventgate" and key in NOT_APPLICABLE:
            text = NOT_APPLICABLE[key]
        elif fail and (stats[kind] is None or key.endswith("held")):
            text = (text + " " if text else "") + fail
        elif stats[kind] is None:
            text = "not run"
        row.append(text)
    return row, stats


def ratios(stats: dict, pairs: list[tuple[str, str]]) -> list[str]:
    out = []
    for a, b in pairs:
        x, y = stats.get(a), stats.get(b)
        out.append(f"{x[0] / y[0]:.3g}" if x and y and y[0] else "n/a")
    return out


def table(results: dict, kinds: list[str], plan: Plan) -> str:
    """Every scenario's row; the targets are the stream worker's (``eventgate``)."""
    pairs = ratio_pairs(kinds)
    head = ["scenario (median [min–max])", *kinds,
            *(f"ratio {SHORT[a]}/{SHORT[b]}" for a, b in pairs), "target", "met"]
    lines = []
    for label, key, digits, _lower, target, check in ROWS:
        row, stats = cells(results, kinds, key, digits)
        egs = stats.get("eventgate")
        lines.append([label, *row, *ratios(stats, pairs), target,
                      "" if check is None or egs is None else ("yes" if check(egs[0]) else "NO")])
    return render_rows(head, lines)


# The targets for the full path (nginx + stream worker on one core), at 5,000 subscribers:
# (label, key, digits, target, check(full, nchan) -> met).
FULL_PATH_ROWS = [
    ("memory per idle stream, KB (S1, 5k streams)", "s1.5000.kb_per_stream", 2, "≤ 8",
     lambda f, n: f <= 8),
    ("CPU-s per 100k deliveries at 50k/s", "s2.5000.at.50000.cpu_per_100k", 2,
     "≤ 1.0 and < nchan", lambda f, n: f <= 1.0 and (n is None or f < n)),
    ("p99 ms at 50k deliveries/s", "s2.5000.at.50000.p99", 1, "≤ 80", lambda f, n: f <= 80),
    ("most deliveries/s held, p99 ≤ 1 s", "s2.5000.max_deliveries_1s", 0, "≥ 2 × nchan",
     lambda f, n: n is not None and f >= 2 * n),
    ("p99 ms at that rate", "s2.5000.p99_at_max_1s", 1, "", None),
    ("most deliveries/s held, p99 ≤ 100 ms", "s2.5000.max_deliveries", 0, "", None),
]


def full_path_table(results: dict, kinds: list[str], plan: Plan) -> str:
    """The deployed path against nchan: the issue's four targets, then CPU at every rate of the
    S2 ladder that both held (the full path must stay below nchan at each)."""
    pairs = ratio_pairs(kinds)
    head = ["full path, 5k subscribers (median [min–max])", *kinds,
            *(f"ratio {SHORT[a]}/{SHORT[b]}" for a, b in pairs), "target", "met"]
    lines = []
    rows = [*FULL_PATH_ROWS]
    for deliveries in plan.s2_ladder:
        if deliveries != 50_000:
            rows.append((f"CPU-s per 100k deliveries at {deliveries // 1000}k/s",
                         f"s2.5000.at.{deliveries}.cpu_per_100k", 2, "< nchan",
                         lambda f, n: n is None or f < n))
    for label, key, digits, target, check in rows:
        row, stats = cells(results, kinds, key, digits)
        if all(stats[k] is None for k in kinds):
            continue
        full, nchan = stats.get("full"), stats.get("nchan")
        bound = nchan[0] if nchan else None
        if bound is None and key.endswith("max_deliveries_1s") and failure(
                results.get("nchan", {}), key):
            bound = plan.s2_ladder[0]  # nchan held no rate: its most is below the first one
        met = "" if check is None or full is None else (
            "yes" if check(full[0], bound) else "NO")
        lines.append([label, *row, *ratios(stats, pairs), target, met])
    return render_rows(head, lines)


def machine() -> str:
    info = {}
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        key, _, value = line.partition(":")
        info.setdefault(key.strip(), value.strip())
    cpu = (f"{info.get('model name', '?')} (family {info.get('cpu family', '?')} model "
           f"{info.get('model', '?')}, {info.get('cpu MHz', '?')} MHz"
           f"{', virtual machine' if 'hypervisor' in info.get('flags', '').split() else ''})")
    versions = []
    for package in ("gevent", "greenlet", "gunicorn", "redis", "hiredis", "flask", "flask-sse"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions.append(f"{package} {importlib.metadata.version(package)}")
    redis_version = subprocess.run(["redis-server", "--version"], capture_output=True,
                                   text=True).stdout.split()[2]
    load = Path("/proc/loadavg").read_text().split()[:3]
    return (f"{cpu}, {os.cpu_count()} cores, kernel {platform.release()}, Python "
            f"{platform.python_version()}, {', '.join(versions)}, redis-server {redis_version}; "
            f"load average {' '.join(load)}")


def build(workdir: Path) -> Path:
    out = ROOT / "var" / "bench" / "build"
    out.mkdir(parents=True, exist_ok=True)
    binary = out / "loadgen"
    source = ROOT / "bench" / "loadgen.c"
    if not binary.exists() or binary.stat().st_mtime < source.stat().st_mtime:
        subprocess.run(["gcc", "-O2", "-Wall", "-o", str(binary), str(source)], check=True)
    return binary


def print_report(text: str, raw: Path) -> None:
    """A bench's table, then the load it left and where its raw results are."""
    print(text)
    print(f"load average after: {' '.join(Path('/proc/loadavg').read_text().split()[:3])}")
    print(f"raw results: {raw}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few-minute subset, 1 repeat")
    parser.add_argument("--only", default="S1,S2,S3,S4,publish,presence,S5",
                        help="comma-separated scenarios (default: all but scale, outbox and the "
                        "10-minute soak S6 — bench/scaling.py's, bench/outbox.py's and "
                        "bench/soak.py's, also run on their own; `make soak`)")
    parser.add_argument("--servers", default=",".join(SERVERS),
                        help="comma-separated, of: " + ", ".join(SERVERS))
    parser.add_argument("--redis-core", choices=(SERVER_CORE, LOAD_CORE), default=SERVER_CORE,
                        help="where Redis runs: with the server (default, as the issue measures)"
                        " or with the load")
    parser.add_argument("--repeats", type=int, default=0)
    parser.add_argument("--s2-ladder", default="",
                        help="S2's offered deliveries/s, comma-separated (default: the plan's)")
    parser.add_argument("--web-flags", default="",
                        help="gunicorn flags added after the web program's own for the publish "
                        "scenario (an A/B: e.g. '--worker-class gthread')")
    args = parser.parse_args()
    plan = QUICK if args.quick else FULL
    if args.repeats:
        plan.repeats = args.repeats
    if args.s2_ladder:
        plan.s2_ladder = [int(n) for n in args.s2_ladder.split(",")]
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the children inherit it
    workdir = ROOT / "var" / "bench" / time.strftime("%Y%m%d-%H%M%S")
    workdir.mkdir(parents=True, exist_ok=True)
    binary = build(workdir)
    kinds = [k for k in args.servers.split(",") if k]
    unknown = [k for k in kinds if k not in SERVERS]
    if unknown:
        parser.error(f"unknown server {', '.join(unknown)}: pick from {', '.join(SERVERS)}")
    if "nchan" in kinds and not nchan_installed():
        parser.error("nchan is not installed: `make bench` installs it "
                     "(apt-get install libnginx-mod-nchan)")
    only = {s.strip().lower() for s in args.only.split(",")}
    started = time.monotonic()
    before = machine()
    log(f"bench in {workdir}; {before}")
    bench = Bench(plan, workdir, binary, shlex.split(args.web_flags), args.redis_core)
    try:
        for kind in kinds:
            if "s1" in only:
                bench.s1(kind)
            if "s2" in only:
                bench.s2(kind)
            if "s3" in only:
                bench.s3(kind)
            if "s4" in only:
                # flask-sse ignores Last-Event-ID: one run shows what its clients miss.
                bench.s4(kind, 1 if kind == "flask-sse" else None)
        if "publish" in only and "eventgate" in kinds:
            bench.publish()
        if "scale" in only:  # its own Redis topologies and table (bench/scaling.py)
            import scaling

            scale = scaling.QUICK if args.quick else scaling.FULL
            started_scale = time.monotonic()
            rows = scaling.run(scale, workdir, binary)
            scale_minutes = (time.monotonic() - started_scale) / 60
        if "outbox" in only:  # its own Redis, PostgreSQL and table (bench/outbox.py)
            import outbox

            outbox_plan = outbox.QUICK if args.quick else outbox.FULL
            started_outbox = time.monotonic()
            outbox_rows = outbox.run(outbox_plan, workdir)
            outbox_minutes = (time.monotonic() - started_outbox) / 60
        if "presence" in only:  # what presence adds to a stream open (bench/presence_opens.py)
            import presence_opens

            started_presence = time.monotonic()
            presence_rows = presence_opens.run(workdir, 2.0 if args.quick else 4.0)
            presence_minutes = (time.monotonic() - started_presence) / 60
        if "s5" in only:  # 100k streams through the whole stack (bench/streams100k.py)
            import streams100k

            started_s5 = time.monotonic()
            s5_rows = streams100k.run(workdir / "s5", 25_000 if args.quick else 100_000)
            s5_minutes = (time.monotonic() - started_s5) / 60
        if "s6" in only:  # the soak (bench/soak.py)
            import soak

            started_s6 = time.monotonic()
            s6_rows = soak.run(workdir / "s6", 2.0 if args.quick else 10.0)
            s6_minutes = (time.monotonic() - started_s6) / 60
    finally:
        bench.redis.stop()
        (workdir / "results.json").write_text(json.dumps(bench.results, indent=1))
    minutes = (time.monotonic() - started) / 60
    command = " ".join([Path(sys.executable).name, "bench/run.py", *sys.argv[1:]])
    print(f"eventgate bench — {command} — {plan.repeats} repeat(s), {minutes:.1f} min")
    print(f"machine: {before}")
    print(f"load average after: {' '.join(Path('/proc/loadavg').read_text().split()[:3])}")
    if only - {"scale", "outbox", "presence", "s5", "s6"}:
        if "full" in kinds:
            print(full_path_table(bench.results, kinds, plan))
            print()
        print(table(bench.results, kinds, plan))
        print(f"raw results: {workdir / 'results.json'}")
    if "scale" in only:
        print(scaling.report(rows, f"{command} (scale)", scale_minutes, before))
    if "outbox" in only:
        print(outbox.report(outbox_rows, f"{command} (outbox)", outbox_minutes, before))
        print(f"raw results: {workdir / 'outbox.json'}")
    if "presence" in only:
        print(presence_opens.report(presence_rows, f"{command} (presence)", presence_minutes,
                                    before))
        print(f"raw results: {workdir / 'presence.json'}")
    if "s5" in only:
        print(streams100k.report(s5_rows, f"{command} (S5)", s5_minutes, before))
        print(f"raw results: {workdir / 's5'}")
    if "s6" in only:
        print(soak.report(s6_rows, f"{command} (S6)", s6_minutes, before))
        print(f"raw results: {workdir / 's6'}")


if __name__ == "__main__":
    main()
