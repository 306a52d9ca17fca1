"""Scenario S5: 100,000 concurrent streams through the whole stack on one box — all held, one
broadcast reaching every stream with p99 ≤ 2 s, the stack's memory ≤ 1 GB.

    .venv/bin/python bench/streams100k.py [--streams 100000] [--broadcasts 3]

also ``bench/run.py --only S5``. The stack is the one ``make up`` runs (bench/wholestack.py),
sized by the rule of docs/deploy.md so that no process has more than 20,000 open files; loadgen
(one process, its own open-files limit raised) connects to nginx from a loopback address per
500 streams (127.2.0.1 up), so that neither the ~28k ephemeral ports of one source address nor
the stack's per-address limits (2,000 connections, a 1,000 burst of opens) decide the result.
Every stream listens on one channel; each broadcast is one POST /api/events through nginx,
stamped with its publish time, and loadgen measures publish→receive per stream. Memory is the
sum over every process of the stack (supervisord, Redis, both gunicorn pools, nginx) of PSS
(/proc/<pid>/smaps_rollup: a page shared by n processes counts 1/n in each), RSS beside it.
Kernel socket memory is nobody's RSS and not counted. Nothing is pinned: the stack and loadgen
share the two cores.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from run import log
from wholestack import (
    FALLBACK,
    HttpPublisher,
    Loadgen,
    Sizing,
    bench_dir,
    cpu_by_role,
    load_average,
    nginx_failures,
    sample,
    sized_stack,
    stream_paths,
    totals,
)

from tests.stack import Stack

STREAMS = 100_000
BROADCASTS = 3
CHANNEL = "bench.all"
P99_BOUND_MS = 2000.0
MEMORY_BOUND_KB = 1_000_000_000 // 1024  # 1 GB
OPEN_SECONDS = 900.0
#: Streams being opened at once (all loadgens together): a fleet arriving, not a stampede
#: (an open nginx gives up on after proxy_connect_timeout still costs the pool its work).
OPEN_WINDOW = 64


def broadcast(stack: Stack, loadgen: Loadgen, publisher: HttpPublisher, held: int) -> dict:
    """One event to every stream: the window's latency figures once each stream has it (or
    after 30 s), with the CPU seconds each part of the stack used meanwhile."""
    loadgen.ask("reset")
    before = sample(stack)
    publisher.publish_next()
    deadline = time.monotonic() + 30
    while True:
        report = loadgen.ask("report")
        if report["events"] >= held or time.monotonic() > deadline:
            report["cpu_s"] = cpu_by_role(before, sample(stack))
            return report
        time.sleep(0.2)


def run(workdir: Path, streams: int = STREAMS, broadcasts: int = BROADCASTS) -> dict:
    """Open ``streams``, measure the stack idle, broadcast; returns the figures (``report``)."""
    workdir.mkdir(parents=True, exist_ok=True)
    sizing = Sizing.for_streams(streams)
    rows: dict = {"sizing": sizing.__dict__, "load_before": load_average()}
    log(f"S5: {streams} streams, {sizing}")
    with sized_stack(workdir, sizing) as stack:
        loadgen = Loadgen(stack, workdir, stream_paths(stack, [CHANNEL]), streams, "s5",
                          window=OPEN_WINDOW)
        try:
            started = time.monotonic()
            stats = loadgen.open(streams, OPEN_SECONDS)
            rows["open_seconds"] = round(time.monotonic() - started, 1)
            rows["open_stats"] = stats
            log(f"S5: opened in {rows['open_seconds']} s: {stats}")
            time.sleep(5)  # the streams' first heartbeats and buffers settle before measuring
            rows["held"] = loadgen.ask("stats")["body"]
            idle = sample(stack)
            rows["idle"] = totals(idle)
            rows["load_idle"] = load_average()
            publisher = HttpPublisher(stack, [CHANNEL])
            rows["broadcasts"] = []
            for number in range(broadcasts):
                got = broadcast(stack, loadgen, publisher, rows["held"])
                log(f"S5: broadcast {number + 1}: {got['events']} events, p99 "
                    f"{got['p99_ms']} ms, max {got['max_ms']} ms")
                rows["broadcasts"].append(got)
                time.sleep(2)
            rows["after"] = totals(sample(stack))
            rows["held_after"] = loadgen.ask("stats")["body"]
            rows["load_after"] = load_average()
            rows["nginx_failures"] = nginx_failures(stack)
        finally:
            loadgen.stop()
    (workdir / "s5.json").write_text(json.dumps(rows, indent=1))
    return rows


def report(rows: dict, command: str, minutes: float, before: str) -> str:
    """The markdown section: sizing, streams held, broadcast latency, memory by process."""
    sizing, idle = rows["sizing"], rows["idle"]
    streams, held = sizing["streams"], rows["held"]
    pss = sum(r["pss_kb"] for r in idle.values())
    rss = sum(r["rss_kb"] for r in idle.values())
    over = pss - MEMORY_BOUND_KB
    # nginx's retry fallback is a 200 too: loadgen holds it open like a stream (it does not
    # read the answer's end), so any of them fails the check.
    fallback = (rows.get("nginx_failures") or {}).get(FALLBACK, 0)
    out = [f"eventgate S5 — {command} — {minutes:.1f} min", f"machine: {before}",
           f"Whole stack (supervisord, Redis, web ×2, stream ×{sizing['stream_workers']} with "
           f"at most {sizing['streams_per_stream_worker']} streams each, nginx "
           f"×{sizing['nginx_workers']} with worker_connections {sizing['nginx_connections']}), "
           "nothing pinned, loadgen on the same two cores; load average "
           f"{rows['load_idle']} idle, {rows['load_after']} after the broadcasts.", "",
           "| check | measured | bound | verdict |", "|---|---|---|---|",
           f"| streams held | {held:,} of {streams:,} (opened in {rows['open_seconds']} s; "
           f"{rows['held_after']:,} after the broadcasts; {fallback:,} of them nginx's retry "
           "fallback) | all | "
           f"{'ok' if held == streams == rows['held_after'] and not fallback else 'MISSED'} |"]
    for number, got in enumerate(rows["broadcasts"], 1):
        ok = got["events"] >= streams and got["p99_ms"] <= P99_BOUND_MS
        cpu = got.get("cpu_s", {})
        spent = ", ".join(f"{name} {seconds:.1f}" for name, seconds in sorted(
            cpu.items(), key=lambda item: -item[1]) if seconds >= 0.05)
        out.append(f"| broadcast {number}: reached, p50 / p99 / max (CPU-s meanwhile: "
                   f"{sum(cpu.values()):.1f}; {spent}) | {got['events']:,}; "
                   f"{got['p50_ms']:.0f} / {got['p99_ms']:.0f} / {got['max_ms']:.0f} ms | every "
                   f"stream, p99 ≤ {P99_BOUND_MS:.0f} ms | {'ok' if ok else 'MISSED'} |")
    out.append(f"| memory of the stack, PSS (RSS) | {pss / 1024:,.0f} MiB ({rss / 1024:,.0f} MiB)"
               f"; {pss / max(held, 1):.1f} KiB per stream | ≤ 1 GB "
               f"({MEMORY_BOUND_KB / 1024:,.0f} MiB) | "
               f"{'ok' if pss <= MEMORY_BOUND_KB else f'MISSED by {over / 1024:,.0f} MiB'} |")
    out += ["", "| process | count | PSS MiB | RSS MiB | most open files in one |",
            "|---|---|---|---|---|"]
    for name, row in sorted(idle.items(), key=lambda item: -item[1]["pss_kb"]):
        out.append(f"| {name} | {row['count']} | {row['pss_kb'] / 1024:,.1f} | "
                   f"{row['rss_kb'] / 1024:,.1f} | {row['max_fds']:,} |")
    failures = rows.get("nginx_failures") or {}
    if failures:
        out += ["", "nginx's error log and fallback answers during the run:"]
        out += [f"- {count:,} × {kind}" for kind, count in failures.items()]
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=STREAMS)
    parser.add_argument("--broadcasts", type=int, default=BROADCASTS)
    args = parser.parse_args()
    started = time.monotonic()
    before = f"load average {load_average()}"
    workdir = bench_dir("s5")
    rows = run(workdir, args.streams, args.broadcasts)
    command = f"bench/streams100k.py --streams {args.streams} --broadcasts {args.broadcasts}"
    print(report(rows, command, (time.monotonic() - started) / 60, before))
    print(f"raw results: {workdir / 's5.json'}")


if __name__ == "__main__":
    main()
