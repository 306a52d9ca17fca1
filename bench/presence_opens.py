"""What presence costs a stream open: opens per second and the stream worker's CPU per open, with
presence leases off (the code before presence: ``StreamLimits._present`` patched out), on a
channel that announces nothing, and on one matching ``EVENTGATE_PRESENCE_CHANNELS``.

    .venv/bin/python bench/presence_opens.py [seconds per case: 4] [subject limit: 0]

With the per-subject limit off (0, the default here) an open makes no Redis round trip of its own
before presence, the harshest comparison; the shipped default (16) makes one.

Starts a redis-server and, per case, a one-worker stream pool (gunicorn -k gevent, the accept
fast path) on free loopback ports; clients open a stream with a subject's token, wait for its
opening, and close it, from a few threads, for the given time. Prints, per case and round, the
opens/s, the worker's CPU per open (µs, /proc) and Redis's CPU per open (µs, INFO cpu). The
cases run in turn, three rounds, so that drift on a shared machine hits each of them.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from urllib.parse import quote

import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eventgate.shared.tokens import ChannelTokens  # noqa: E402

LOOPBACK = "127.0.0.1"
ROUNDS = 3
CLIENTS = 8
SUBJECTS = 50
SECRET = "s" * 40
#: A gunicorn config: the pool's own, with the presence leases of an open patched out.
_OFF_CONF = """
from eventgate.stream.gunicorn_conf import *  # noqa: F403
from eventgate.stream.gunicorn_conf import post_worker_init as _post


def post_worker_init(worker):
    from eventgate.stream.limits import StreamLimits
    StreamLimits._present = lambda self, lease, subject, channels: lease
    _post(worker)
"""
CASES = {
    "presence off (before)": ("bench.plain", None),
    "presence on, channel not announcing": ("bench.plain", None),
    "presence on, announcing channel": ("room.bench", "room.*"),
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return probe.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def redis_cpu(client: redis.Redis) -> float:
    info = client.info("cpu")
    return info["used_cpu_sys"] + info["used_cpu_user"]


def open_close(port: int, path: str) -> None:
    with socket.create_connection((LOOPBACK, port), timeout=10) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        seen = b""
        while b"retry:" not in seen:
            chunk = sock.recv(4096)
            if not chunk:
                raise RuntimeError(f"stream ended: {seen[:200]!r}")
            seen += chunk


def run_case(workdir: Path, redis_url: str, client: redis.Redis, name: str, seconds: float,
             subject_limit: str) -> tuple[float, float, float]:
    channel, pattern = CASES[name]
    port = free_port()
    conf = workdir / "off_conf.py"
    conf.write_text(_OFF_CONF)
    env = {**os.environ, "EVENTGATE_SECRET_KEY": SECRET, "EVENTGATE_PUBLISH_KEY": SECRET,
           "EVENTGATE_REDIS_URL": redis_url, "EVENTGATE_VAR_DIR": str(workdir / "var"),
           "EVENTGATE_HEARTBEAT": "5", "EVENTGATE_MAX_STREAMS_PER_SUBJECT": subject_limit}
    env.pop("EVENTGATE_PRESENCE_CHANNELS", None)
    if pattern:
        env["EVENTGATE_PRESENCE_CHANNELS"] = pattern
    gunicorn = str(Path(sys.executable).with_name("gunicorn"))
    config = str(conf) if name.startswith("presence off") else \
        "python:eventgate.stream.gunicorn_conf"
    server = subprocess.Popen(
        [gunicorn, "eventgate.stream.wsgi:app", "-c", config, "--worker-class", "gevent",
         "--bind", f"{LOOPBACK}:{port}", "--workers", "1", "--keep-alive", "0"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                urllib.request.urlopen(f"http://{LOOPBACK}:{port}/streams/healthz", timeout=1)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        (worker,) = [int(p) for p in subprocess.run(
            ["pgrep", "-P", str(server.pid)], capture_output=True, text=True).stdout.split()]
        tokens = ChannelTokens((SECRET,))
        paths = [
            f"/streams?token={quote(tokens.issue([channel], subject=f'user-{i}').token)}"
            for i in range(SUBJECTS)
        ]
        for path in paths[:10]:
            open_close(port, path)  # warm
        opens = [0] * CLIENTS
        stop = threading.Event()

        def loop(number: int) -> None:
            i = number
            while not stop.is_set():
                open_close(port, paths[i % SUBJECTS])
                opens[number] += 1
                i += CLIENTS

        threads = [threading.Thread(target=loop, args=(n,)) for n in range(CLIENTS)]
        cpu0, redis0, start = cpu_seconds(worker), redis_cpu(client), time.monotonic()
        for thread in threads:
            thread.start()
        time.sleep(seconds)  # the measured period
        stop.set()
        for thread in threads:
            thread.join()
        took = time.monotonic() - start
        time.sleep(0.5)  # the keeper's last round after the last close
        total = sum(opens)
        worker_us = (cpu_seconds(worker) - cpu0) / total * 1e6
        redis_us = (redis_cpu(client) - redis0) / total * 1e6
        return total / took, worker_us, redis_us
    finally:
        server.terminate()
        server.wait(15)


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 4.0
    subject_limit = sys.argv[2] if len(sys.argv) > 2 else "0"
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        port = free_port()
        server = subprocess.Popen([shutil.which("redis-server") or "/usr/bin/redis-server",
                                   "--port", str(port), "--bind", LOOPBACK, "--save", "",
                                   "--dir", str(workdir)], stdout=subprocess.DEVNULL)
        try:
            client = redis.Redis(host=LOOPBACK, port=port)
            for _ in range(100):
                try:
                    client.ping()
                    break
                except redis.ConnectionError:
                    time.sleep(0.05)
            results: dict[str, list[tuple[float, float, float]]] = {name: [] for name in CASES}
            for _ in range(ROUNDS):
                for name in CASES:
                    results[name].append(
                        run_case(workdir, f"redis://{LOOPBACK}:{port}/0", client, name, seconds,
                                 subject_limit)
                    )
            for name, rows in results.items():
                text = ", ".join(f"{r:.0f}/s {w:.0f} µs {d:.0f} µs" for r, w, d in rows)
                print(f"{name:38s} opens/s, worker CPU/open, Redis CPU/open: {text}")
        finally:
            server.terminate()
            server.wait(10)


if __name__ == "__main__":
    main()
