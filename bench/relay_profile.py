"""Where a delivery's CPU goes on the full path (nginx in front of the stream worker) and on
nchan: one S2 step at 5,000 subscribers under ``perf record``, the samples turned into µs per
delivery by system call and by process.

    .venv/bin/python bench/relay_profile.py [--rate 50000] [--seconds 2] [--servers full,nchan]

The setup is bench/run.py's (server, nginx and Redis on core 0, the load on core 1; its Bench,
Loadgen and Publisher), so the figures sit beside ``make bench``'s. It answers one question the
tables cannot: how much of the full path's cost is the relay's own system calls (nginx's
``recv`` from the pool, the worker's ``send`` to nginx), and how much is the one write to the
client that every server pays, nchan included. perf's own overhead is in the step's CPU
seconds, so the totals sit a little above the tables'. Needs ``perf`` (Debian's linux-perf,
installed by ``make bench``) and root or ``kernel.perf_event_paranoid`` ≤ 1.
"""

from __future__ import annotations

import argparse
import re
import resource
import signal
import subprocess
import time
from pathlib import Path

import run

#: (label, process kind, kernel entry symbol whose "children" share is the call's whole cost)
CALLS = [
    ("write to the client (`writev`; on loopback with the client's TCP receive and wake-up)",
     "nginx", "do_writev"),
    ("read from the pool (`recv` on the Unix socket)", "nginx", "__sys_recvfrom"),
    ("wait for events (`epoll_wait`)", "nginx", "do_epoll_wait"),
    ("the worker's send to nginx (`send` on the Unix socket)", "gunicorn", "__sys_sendto"),
    ("the worker's wait for events (`epoll_wait`)", "gunicorn", "do_epoll_wait"),
]
_LINE = re.compile(r"^\s+([\d.]+)%\s+([\d.]+)%\s+(\S+)\s+\[[.k]\]\s+(\S+)")
_COMM = re.compile(r"^\s+([\d.]+)%\s+(\S+)\s*$")


def perf_shares(data: Path) -> tuple[dict[str, float], dict[tuple[str, str], float]]:
    """(share of samples per process name, children share per (process name, symbol)), in %."""
    by_comm = subprocess.run(
        ["perf", "report", "-i", str(data), "--stdio", "--no-children", "--sort", "comm",
         "-g", "none"], capture_output=True, text=True, check=True).stdout
    comms = {m[2]: float(m[1]) for m in map(_COMM.match, by_comm.splitlines()) if m}
    by_symbol = subprocess.run(
        ["perf", "report", "-i", str(data), "--stdio", "--children", "--sort", "comm,sym",
         "-g", "none"], capture_output=True, text=True, check=True).stdout
    symbols = {(m[3], m[4]): float(m[1]) for m in map(_LINE.match, by_symbol.splitlines()) if m}
    return comms, symbols


def profile(bench: run.Bench, kind: str, rate: float, seconds: float) -> dict:
    """One step at ``rate`` deliveries/s to 5,000 subscribers of one channel, under perf."""
    subscribers = 5000
    server = bench.server(kind)
    tag = bench.tag(f"profile-{kind}")
    channel = f"bench.profile.{tag}"
    publisher = run.Publisher(server, [channel], tag)
    loadgen = run.Loadgen(bench.loadgen, server, [channel], subscribers, tag, reconnect=True,
                          start=0)
    data = bench.workdir / f"perf-{kind}.data"
    try:
        held = bench._connect(server, loadgen, publisher, subscribers)
        if held < subscribers:
            raise RuntimeError(f"{kind}: only {held}/{subscribers} streams opened")
        pids = [*server.process.workers()] if kind == "nchan" else [server.worker]
        if kind == "full":
            pids += server.nginx.workers()
        perf = subprocess.Popen(
            ["perf", "record", "-F", "2000", "-g", "-o", str(data),
             "-p", ",".join(map(str, pids))],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)  # perf attached before the first event
        step = bench._step(server, loadgen, publisher, rate / subscribers, seconds, "first",
                           subscribers)
        perf.send_signal(signal.SIGINT)
        perf.wait(60)
    finally:
        loadgen.stop()
        publisher.stop()
        server.stop()
    comms, symbols = perf_shares(data)
    return {"kind": kind, "step": step, "comms": comms, "symbols": symbols}


def report(results: list[dict], command: str) -> str:
    """µs of CPU per delivery: by system call, the rest of each process, the total."""
    kinds = [r["kind"] for r in results]
    head = "| per delivery, µs | " + " | ".join(
        f"{r['kind']} ({r['step']['cpu_s'] / r['step']['expected'] * 1e5:.2f} CPU-s/100k, "
        f"p99 {r['step']['p99_ms']:.0f} ms)" for r in results) + " |"
    lines = [f"eventgate relay profile — {command}", f"machine: {run.machine()}", "",
             head, "|---|" + "---|" * len(kinds)]

    def micro(result: dict, share: float) -> float:
        step = result["step"]
        return share / 100 * step["cpu_s"] / step["expected"] * 1e6

    named: dict[str, dict[str, float]] = {}
    for label, comm, symbol in CALLS:
        cells = []
        for result in results:
            # nchan is nginx: its calls count under "nginx"; a worker it does not have.
            share = result["symbols"].get((comm, symbol))
            named.setdefault(result["kind"], {}).setdefault(comm, 0.0)
            if share is None:
                cells.append("—")
                continue
            named[result["kind"]][comm] += share
            cells.append(f"{micro(result, share):.1f}")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    for comm, label in (("nginx", "nginx's own code (proxy or nchan, filters) and the rest"),
                        ("gunicorn", "the worker's Python and the rest")):
        cells = []
        for result in results:
            share = result["comms"].get(comm)
            cells.append("—" if share is None else
                         f"{micro(result, share - named[result['kind']].get(comm, 0.0)):.1f}")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append("| total | " + " | ".join(
        f"{micro(r, sum(r['comms'].values())):.1f}" for r in results) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=50_000, help="deliveries/s")
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--servers", default="full,nchan")
    args = parser.parse_args()
    kinds = [k for k in args.servers.split(",") if k]
    if "nchan" in kinds and not run.nchan_installed():
        parser.error("nchan is not installed: `make bench` installs it")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    workdir = run.ROOT / "var" / "bench" / f"{time.strftime('%Y%m%d-%H%M%S')}-profile"
    workdir.mkdir(parents=True, exist_ok=True)
    bench = run.Bench(run.QUICK, workdir, run.build(workdir))
    try:
        results = [profile(bench, kind, args.rate, args.seconds) for kind in kinds]
    finally:
        bench.redis.stop()
    command = (f"bench/relay_profile.py --rate {args.rate:g} --seconds {args.seconds:g} "
               f"--servers {args.servers}")
    print(report(results, command))
    print(f"load average after: {' '.join(Path('/proc/loadavg').read_text().split()[:3])}")
    print(f"raw profiles: {workdir}")


if __name__ == "__main__":
    main()
