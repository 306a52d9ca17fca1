"""The whole stack as ``make up`` runs it (supervisord, Redis, web and stream pools, nginx),
sized for a number of streams, for the whole-stack scenarios S5 (bench/streams100k.py) and S6
(bench/soak.py): the sizing rule, the stack's processes and their memory, loadgen and a paced
publisher through nginx.

The stack is tests/stack.py's ``Stack`` (the real templates rendered by deploy/render.py into a
private var dir, free loopback ports); ``sized_stack`` then applies the sizing rule of
docs/deploy.md to the rendered files before they start, as an operator would to a rendered
production config: worker counts, connections per worker and open files per process.
"""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import json
import math
import os
import re
import secrets
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from run import Process, build, cpu_seconds, wait_until  # noqa: E402

from eventgate.deploy.stack import stack_processes  # noqa: E402
from eventgate.shared.tokens import ChannelTokens  # noqa: E402
from tests.servers import LOOPBACK  # noqa: E402
from tests.stack import Stack  # noqa: E402

#: Open files each process of the stack may have (supervisord's minfds; nginx's
#: worker_rlimit_nofile): the limit the sizing rule keeps every process under.
FD_LIMIT = 20000
#: Files an nginx worker holds besides its connections (listeners, logs, eventfd, epoll).
NGINX_SPARE_FDS = 100
#: Files a stream worker holds besides its streams (Redis connections, metrics files, pipes).
STREAM_SPARE_FDS = 500
#: Share of a worker's capacity the sizing fills: the kernel spreads connections over workers
#: by hash (nginx's reuseport) or by who accepts first (gunicorn), never exactly evenly.
FILL = 0.8
CLIENT_SOURCE_BASE = "127.2.0.1"
#: Streams per client source address: below EVENTGATE_CONNECTIONS_PER_ADDRESS (2000) and the
#: connect burst (1000), so that the stack's per-address limits stay as shipped.
STREAMS_PER_SOURCE = 500


@dataclass(frozen=True)
class Sizing:
    """Worker counts and per-worker limits for ``streams`` concurrent streams."""

    streams: int
    nginx_workers: int
    nginx_connections: int  # worker_connections: client and upstream connections both count
    stream_workers: int
    streams_per_stream_worker: int  # EVENTGATE_MAX_STREAMS_PER_WORKER and --worker-connections

    @classmethod
    def for_streams(cls, streams: int, fd_limit: int = FD_LIMIT) -> Sizing:
        """The rule of docs/deploy.md: an nginx worker holds two files per stream (client and
        upstream), a stream worker one; each worker is filled to FILL of what its files allow."""
        nginx_connections = fd_limit - NGINX_SPARE_FDS
        per_stream_worker = fd_limit - STREAM_SPARE_FDS
        return cls(
            streams=streams,
            nginx_workers=max(1, math.ceil(streams / (FILL * nginx_connections / 2))),
            nginx_connections=nginx_connections,
            stream_workers=max(1, math.ceil(streams / (FILL * per_stream_worker))),
            streams_per_stream_worker=per_stream_worker,
        )


def _replace(path: Path, pattern: str, new: str, times: int = 1) -> None:
    text = path.read_text()
    changed, count = re.subn(pattern, new, text, flags=re.MULTILINE)
    if count != times:
        raise RuntimeError(f"{path.name}: {pattern!r} matched {count} times (template changed?)")
    path.write_text(changed)


def apply_sizing(stack: Stack, sizing: Sizing) -> None:
    """Rewrite the stack's rendered nginx.conf and supervisord.conf for ``sizing``."""
    nginx = stack.var_dir / "conf" / "nginx.conf"
    _replace(nginx, r"^worker_processes \S+;", f"worker_processes {sizing.nginx_workers};")
    _replace(nginx, r"^worker_rlimit_nofile \d+;", f"worker_rlimit_nofile {FD_LIMIT};")
    _replace(nginx, r"^(\s*)worker_connections \d+;",
             rf"\1worker_connections {sizing.nginx_connections};")
    # One listening socket per worker: the kernel spreads new connections over the workers by
    # hash, where a shared socket lets whichever worker wakes first take a whole burst.
    _replace(nginx, rf"^(\s*)listen {re.escape(LOOPBACK)}:{stack.port};",
             rf"\1listen {LOOPBACK}:{stack.port} reuseport;")
    # nginx reaches the pool on its Unix socket (the port only backs it up): no ephemeral-port
    # limit per source address on that side, so no proxy_bind spread is needed.
    # The stream locations log at alert only (a request line holds a token): here, where the
    # tokens are the bench's own, why nginx answered a stream itself must show.
    _replace(nginx, r"nginx-error\.log alert;", "nginx-error.log error;", times=2)
    supervisord = stack.var_dir / "conf" / "supervisord.conf"
    _replace(supervisord, r"--worker-connections \d+",
             f"--worker-connections {sizing.streams_per_stream_worker}")


@contextlib.contextmanager
def sized_stack(workdir: Path, sizing: Sizing, settings: dict[str, str] | None = None,
                web_workers: int = 2) -> Iterator[Stack]:
    """A started stack sized for ``sizing``; stopped (and checked clean) on exit."""
    stack = Stack(workdir, stream_workers=sizing.stream_workers, web_workers=web_workers,
                  settings={"EVENTGATE_MAX_STREAMS_PER_WORKER":
                            str(sizing.streams_per_stream_worker), **(settings or {})})
    apply_sizing(stack, sizing)
    stack.start()
    try:
        yield stack
    finally:
        stack.stop(check=False)


# -- processes and their memory ----------------------------------------------------------------


def role(command: str, parent_command: str = "") -> str:
    """What a process of the stack is, from its command line and its parent's (gunicorn's
    workers run their master's command line; Redis rewrites its title)."""
    if command.startswith("nginx: master"):
        return "nginx master"
    if command.startswith("nginx: worker"):
        return "nginx worker"
    if command.startswith("nginx:"):
        return "nginx other"
    if "redis-server" in command:
        return "redis"
    if "supervisord" in command:
        return "supervisord"
    for pool in ("stream", "web"):
        if f"eventgate.{pool}.wsgi" in command:
            return f"{pool} {'worker' if command == parent_command else 'master'}"
    return "other"


def _smaps(pid: int) -> dict[str, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, _, value = line.partition(":")
        fields[name] = int(value.split()[0])
    return fields


def sample(stack: Stack) -> dict[int, dict]:
    """pid -> role, RSS and PSS (KB) and open files of every process of the stack now."""
    found = {}
    processes = stack_processes(stack.var_dir)
    for pid, process in processes.items():
        parent = processes.get(process.parent)
        with contextlib.suppress(OSError):
            smaps = _smaps(pid)
            found[pid] = {"role": role(process.command, parent.command if parent else ""),
                          "rss_kb": smaps["Rss"],
                          "pss_kb": smaps["Pss"], "fds": len(os.listdir(f"/proc/{pid}/fd")),
                          "cpu_s": cpu_seconds(pid),
                          "started": process.started}
    return found


def cpu_by_role(before: dict[int, dict], after: dict[int, dict]) -> dict[str, float]:
    """CPU seconds each role used between two samples (processes present in both)."""
    used: dict[str, float] = {}
    for pid, entry in after.items():
        if pid in before and before[pid]["started"] == entry["started"]:
            role_name = entry["role"]
            used[role_name] = used.get(role_name, 0.0) + entry["cpu_s"] - before[pid]["cpu_s"]
    return {name: round(seconds, 2) for name, seconds in used.items()}


def totals(processes: dict[int, dict]) -> dict[str, dict]:
    """Per role: processes, RSS and PSS sums (KB), the most open files of one of them."""
    out: dict[str, dict] = {}
    for entry in processes.values():
        row = out.setdefault(entry["role"], {"count": 0, "rss_kb": 0, "pss_kb": 0, "max_fds": 0})
        row["count"] += 1
        row["rss_kb"] += entry["rss_kb"]
        row["pss_kb"] += entry["pss_kb"]
        row["max_fds"] = max(row["max_fds"], entry["fds"])
    return out


def bench_dir(name: str) -> Path:
    """A new directory for one run's stack and raw results, under var/bench as bench/run.py's."""
    path = ROOT / "var" / "bench" / f"{time.strftime('%Y%m%d-%H%M%S')}-{name}"
    path.mkdir(parents=True)
    return path


FALLBACK = "streams answered with nginx's retry fallback"


def nginx_failures(stack: Stack) -> dict[str, int]:
    """What went wrong between nginx and the pool, by kind (nginx's error log), and how many
    streams nginx answered itself with the retry fallback (its access log)."""
    kinds: dict[str, int] = {}
    for line in stack.log("nginx-error").splitlines():
        if "[error]" in line or "[crit]" in line or "[alert]" in line:
            kind = re.sub(r"^.*?\*\d+ ", "", line).split(" while ")[0].split(", client")[0]
            kind = re.sub(r"\d+\.\d+\.\d+\.\d+(:\d+)?", "<address>", kind)
            kinds[kind] = kinds.get(kind, 0) + 1
    fallback = sum(1 for line in stack.log("nginx-access").splitlines()
                   if '"GET /streams HTTP/1.1" 200 13 ' in line)
    if fallback:
        kinds[FALLBACK] = fallback
    return kinds


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


# -- clients ------------------------------------------------------------------------------------


class Loadgen:
    """bench/loadgen.c against the stack's nginx, as many processes as its streams need: one
    process may open no more files than any other (FD_LIMIT, which only CAP_SYS_RESOURCE could
    raise). Each connects from its own loopback addresses, one per STREAMS_PER_SOURCE streams
    (127.2.0.1 up). Answers are summed over the processes; latency percentiles are the
    highest of theirs (the p99 of all the streams is at most the highest p99 of any part)."""

    def __init__(self, stack: Stack, workdir: Path, paths: list[str], conns: int, tag: str,
                 reconnect: bool = False, window: int = 256) -> None:
        binary = build(workdir)
        paths_file = workdir / f"paths-{tag}.txt"
        paths_file.write_text("\n".join(paths) + "\n")
        parts = math.ceil(conns / (FD_LIMIT - NGINX_SPARE_FDS))
        base = int(ipaddress.IPv4Address(CLIENT_SOURCE_BASE))
        self.processes = []
        for part in range(parts):
            count = conns // parts + (part < conns % parts)
            sources = max(1, math.ceil(count / STREAMS_PER_SOURCE))
            args = [str(binary), "--port", str(stack.port), "--paths", str(paths_file),
                    "--conns", str(count), "--window", str(max(1, window // parts)),
                    "--start", "0", "--sources", str(sources),
                    "--source-base", str(ipaddress.IPv4Address(base))]
            base += sources
            if reconnect:
                args.append("--reconnect")
            self.processes.append(Process(f"loadgen-{tag}-{part}", args, workdir, stdin=True))

    def ask(self, command: str) -> dict:
        """``command`` to every process (``open N``: N in all); their answers combined."""
        if command.startswith("open "):
            wanted = int(command.split()[1])
            parts = len(self.processes)
            answers = [p.ask(f"open {wanted // parts + (i < wanted % parts)}")
                       for i, p in enumerate(self.processes)]
        elif command.startswith("drop "):
            wanted = int(command.split()[1])
            parts = len(self.processes)
            answers = [p.ask(f"drop {wanted // parts + (i < wanted % parts)}")
                       for i, p in enumerate(self.processes)]
        else:
            answers = [p.ask(command) for p in self.processes]
        return combine(answers)

    def open(self, count: int, timeout: float) -> dict:
        """Open ``count`` streams and wait until each has its answer's head (or failed)."""
        self.ask(f"open {count}")

        def settled() -> dict | None:
            stats = self.ask("stats")
            pending = stats["unstarted"] + stats["connecting"] + stats["head"]
            return stats if pending == 0 else None

        return wait_until(settled, timeout, f"{count} streams to open", 1.0)

    def stop(self) -> None:
        for process in self.processes:
            if process.popen.poll() is None:
                with contextlib.suppress(OSError, RuntimeError):
                    process.ask("close")
                    process.tell("quit")
            process.stop()


def combine(answers: list[dict]) -> dict:
    """One answer from loadgens' answers to the same command."""
    out: dict = {}
    for key, value in answers[0].items():
        values = [answer[key] for answer in answers]
        if not isinstance(value, int | float) or isinstance(value, bool):
            out[key] = value
        elif key.startswith("min_") or key == "first_drop_us":
            present = [v for v in values if v >= 0 and (v or key != "first_drop_us")]
            out[key] = min(present) if present else value
        elif key.endswith(("_ms", "_s", "_us")) or key.startswith("max_"):
            out[key] = max(values)
        else:
            out[key] = sum(values)
    return out


def stream_paths(stack: Stack, channels: list[str], ttl: int = 7200) -> list[str]:
    tokens = ChannelTokens((stack.secret_key,))
    return [f"/streams?token={tokens.issue([channel], ttl=ttl).token}" for channel in channels]


class HttpPublisher:
    """POST /api/events through nginx, as a Flask shop's web app does: events round-robin over
    ``channels``, each stamped with its publish time and its sequence number on its channel
    (what loadgen checks). A failed POST is retried with its Idempotency-Key, so that it is
    stored once."""

    def __init__(self, stack: Stack, channels: list[str]) -> None:
        self.stack = stack
        self.channels = channels
        self.sent = 0
        self.retries = 0
        self._conn: http.client.HTTPConnection | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def publish_next(self) -> None:
        channel = self.channels[self.sent % len(self.channels)]
        seq = self.sent // len(self.channels) + 1
        body = json.dumps({"channel": channel, "type": "m",
                           "data": {"ts": time.time_ns() // 1000, "s": seq}})
        headers = {"Authorization": f"Bearer {self.stack.publish_key}",
                   "Content-Type": "application/json",
                   "Idempotency-Key": f"bench-{secrets.token_hex(8)}"}
        for attempt in range(20):
            try:
                if self._conn is None:
                    self._conn = http.client.HTTPConnection(LOOPBACK, self.stack.port, timeout=10)
                self._conn.request("POST", "/api/events", body, headers)
                response = self._conn.getresponse()
                response.read()
                if response.status == 201:
                    self.sent += 1
                    return
            except (OSError, http.client.HTTPException):
                self._conn = None
            self.retries += 1
            time.sleep(min(0.05 * 2 ** attempt, 1.0))
        raise RuntimeError(f"POST /api/events failed 20 times for {channel} #{seq}")

    def complete_round(self) -> None:
        """Publish until every channel has had as many events as the others."""
        while self.sent % len(self.channels):
            self.publish_next()

    def start(self, rate: float) -> None:
        """Publish ``rate`` events/s in a thread until ``stop``."""
        def pace() -> None:
            start, first = time.monotonic(), self.sent
            while not self._stop.is_set():
                due = first + int((time.monotonic() - start) * rate) + 1
                if self.sent < due:
                    self.publish_next()
                else:
                    self._stop.wait(max(0.0, (self.sent - first) / rate
                                        - (time.monotonic() - start)))

        self._thread = threading.Thread(target=pace, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)
        self.complete_round()

