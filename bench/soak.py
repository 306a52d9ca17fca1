"""Scenario S6, the soak: 10,000 streams through the whole stack for 10 minutes with churn (a
tenth of them cut and reconnecting with their cursor each minute) and a steady publish rate:
every event delivered once, and the memory of every process flat after warm-up.

    .venv/bin/python bench/soak.py [--minutes 10] [--streams 10000] [--rate 50]

also ``bench/run.py --only S6`` (not in the default run: it takes the minutes it is given).
The stack is the one ``make up`` runs (bench/wholestack.py; at least its two stream and two
nginx workers). Streams listen on CHANNELS channels, a hundred each; the publisher POSTs
``--rate`` events/s through nginx, round-robin over the channels, each stamped with its
sequence number on its channel. Every few seconds loadgen cuts its next streams (RST, like a
lost network), which come back after the server's ``retry:`` delay with ``Last-Event-ID``, a
tenth of all streams per minute. Loadgen checks each stream's sequence (no gap, no duplicate,
across reconnects); at the end the publisher completes a round, so that every channel had the
same number of events, and every stream must have received exactly that many.

Memory: RSS and PSS of every process of the stack every SAMPLE_SECONDS; per process the least
squares slope of RSS over the samples after the warm-up (the first fifth of the run, at most
two minutes), in KB/min. Verdict "flat": the slope is at most FLAT_KB_PER_MIN or FLAT_SHARE of
the process's mean RSS per minute, whichever is larger. A process that restarted (a new pid)
fails outright. Each channel retains 50 events and idempotency records live 60 s (SETTINGS),
so that Redis's size is steady after the warm-up too. A stream worker's memory follows the
streams it holds (about 2 KiB each), and churn may move streams between workers: the table shows
each process's open files beside its slope.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from dataclasses import replace
from pathlib import Path

import redis
from run import log
from wholestack import (
    HttpPublisher,
    Loadgen,
    Sizing,
    bench_dir,
    load_average,
    sample,
    sized_stack,
    stream_paths,
)

STREAMS = 10_000
MINUTES = 10.0
RATE = 50.0  # events/s, each to one channel of STREAMS / CHANNELS streams
CHANNELS = 100
CHURN_PER_MINUTE = 0.1
CHURN_SECONDS = 5.0
SAMPLE_SECONDS = 10.0
FLAT_KB_PER_MIN = 16.0
FLAT_SHARE = 0.0005  # of the mean RSS per minute: 3 % an hour
SETTLE_SECONDS = 60.0
#: Each channel's retained log, capped low so that Redis reaches its steady size within the
#: warm-up (at the shipped 10,000 it would grow, by design, for hours at this rate); far more
#: than a reconnect's gap of a few seconds needs.
#: Idempotency records (the publisher sends a key with each POST, so a retry is stored once)
#: likewise expire within the warm-up instead of a day later.
SETTINGS = {"EVENTGATE_RETENTION_COUNT": "50", "EVENTGATE_IDEMPOTENCY_SECONDS": "60"}
#: Streams opened at once: a gentle start spreads them evenly over the stream workers (a burst
#: lands mostly on whichever accepts first, and churn then moves streams, and memory, between
#: workers for the whole run).
OPEN_WINDOW = 32


def slope_per_minute(points: list[tuple[float, float]]) -> float:
    """Least squares slope of (minutes, KB) points, KB/min."""
    n = len(points)
    if n < 2:
        return 0.0
    mean_t = sum(t for t, _ in points) / n
    mean_v = sum(v for _, v in points) / n
    spread = sum((t - mean_t) ** 2 for t, _ in points)
    return sum((t - mean_t) * (v - mean_v) for t, v in points) / spread if spread else 0.0


def churn_and_sample(stack, loadgen: Loadgen, streams: int, minutes: float) -> list[dict]:  # noqa: ANN001
    """Until ``minutes`` have passed: drop CHURN_PER_MINUTE of the streams per minute, spread
    over CHURN_SECONDS ticks, and sample every process's memory every SAMPLE_SECONDS."""
    samples = []
    redis_client = stack.redis()
    start = time.monotonic()
    dropped = 0
    next_sample = start
    while (elapsed := time.monotonic() - start) < minutes * 60:
        if time.monotonic() >= next_sample:
            samples.append({"minute": elapsed / 60, "processes": sample(stack),
                            "load": load_average(), "stats": loadgen.ask("stats"),
                            "redis": redis_memory(redis_client)})
            next_sample += SAMPLE_SECONDS
        due = int(streams * CHURN_PER_MINUTE * elapsed / 60)
        if due > dropped:
            dropped += loadgen.ask(f"drop {due - dropped}")["dropped"]
        time.sleep(CHURN_SECONDS)
    redis_client.close()
    return samples


def redis_memory(client: redis.Redis) -> dict:
    """What Redis itself counts (INFO): its data, what it holds for clients and the AOF, and
    its key count. Beside its RSS this tells data that grows from an allocator that settles."""
    try:
        info = client.info()
    except (redis.RedisError, OSError):
        return {}
    keys = sum(db.get("keys", 0) for name, db in info.items()
               if name.startswith("db") and isinstance(db, dict))
    return {"used_kb": info["used_memory"] // 1024,
            "dataset_kb": info.get("used_memory_dataset", 0) // 1024,
            "clients_kb": info.get("mem_clients_normal", 0) // 1024,
            "aof_kb": info.get("mem_aof_buffer", 0) // 1024, "keys": keys}


def redis_growth(samples: list[dict], warmup_minutes: float) -> dict:
    """Slopes after warm-up (KB/min) of what Redis counts, with first and last values."""
    after = [point for point in samples
             if point["minute"] >= warmup_minutes and point.get("redis")]
    out = {}
    for name in ("used_kb", "dataset_kb", "clients_kb", "aof_kb", "keys"):
        points = [(point["minute"], point["redis"][name]) for point in after]
        out[name] = {"first": points[0][1] if points else 0,
                     "last": points[-1][1] if points else 0,
                     "slope": round(slope_per_minute(points), 1)}
    return out


def wait_complete(loadgen: Loadgen, final_seq: int) -> dict:
    """The window's report once every stream holds the last event of its channel (or after
    SETTLE_SECONDS)."""
    deadline = time.monotonic() + SETTLE_SECONDS
    while True:
        got = loadgen.ask("report")
        if got["min_last_seq"] >= final_seq or time.monotonic() > deadline:
            return got
        time.sleep(1)


def beyond_peaks_kb(series: list[tuple[float, int, int]], warmup_minutes: float) -> float:
    """Net RSS growth (KB) after warm-up between samples at which the process held no more
    open files than at some earlier sample: growth that a new high of connections (the
    allocator's high-water mark) does not explain. ``series``: (minute, RSS KB, open files)."""
    grown, peak = 0.0, series[0][2] if series else 0
    for (_, rss_before, _), (minute, rss, fds) in itertools.pairwise(series):
        if minute >= warmup_minutes and fds <= peak:
            grown += rss - rss_before
        peak = max(peak, fds)
    return grown


def slopes(samples: list[dict], warmup_minutes: float) -> dict[str, dict]:
    """Per process (role and pid): its slope after warm-up, mean RSS, verdict: "flat" (slope
    within the bound), "follows its peak" (the RSS rose only while the process held more
    connections than ever before: a stream worker that churn gives more streams), else
    "GROWING"; "RESTARTED" when its pid went away or was reused."""
    series: dict[str, dict] = {}
    for point in samples:
        for pid, entry in point["processes"].items():
            row = series.setdefault(str(pid), {"role": entry["role"], "started": entry["started"],
                                               "all": [], "restarted": False})
            row["restarted"] |= row["started"] != entry["started"]
            row["all"].append((point["minute"], entry["rss_kb"], entry["fds"]))
    last = {str(pid) for pid in samples[-1]["processes"]} if samples else set()
    out = {}
    for pid, row in series.items():
        after = [item for item in row["all"] if item[0] >= warmup_minutes]
        values = [rss for _, rss, _ in after]
        mean = sum(values) / len(values) if values else 0.0
        slope = slope_per_minute([(minute, rss) for minute, rss, _ in after])
        span = after[-1][0] - after[0][0] if len(after) > 1 else 1.0
        beyond = beyond_peaks_kb(row["all"], warmup_minutes) / span
        bound = max(FLAT_KB_PER_MIN, FLAT_SHARE * mean)
        if pid not in last or row["restarted"]:
            verdict = "RESTARTED"
        elif slope <= bound:
            verdict = "flat"
        else:
            verdict = "follows its peak" if beyond <= bound else "GROWING"
        out[f"{row['role']} {pid}"] = {
            "role": row["role"], "mean_rss_kb": round(mean), "slope_kb_per_min": round(slope, 1),
            "beyond_peaks_kb_per_min": round(beyond, 1),
            "bound_kb_per_min": round(bound, 1), "samples": len(values),
            "first_kb": values[0] if values else 0, "last_kb": values[-1] if values else 0,
            "fds": (after[0][2], after[-1][2]) if after else (0, 0), "verdict": verdict}
    return out


def run(workdir: Path, minutes: float = MINUTES, streams: int = STREAMS,
        rate: float = RATE) -> dict:
    """The soak; returns its figures (``report``)."""
    workdir.mkdir(parents=True, exist_ok=True)
    base = Sizing.for_streams(streams)
    sizing = replace(base, nginx_workers=max(2, base.nginx_workers),
                     stream_workers=max(2, base.stream_workers))
    channels = [f"soak.{n}" for n in range(CHANNELS)]
    rows: dict = {"sizing": sizing.__dict__, "minutes": minutes, "rate": rate,
                  "channels": CHANNELS, "load_before": load_average()}
    log(f"S6: {streams} streams, {minutes} min, {rate} events/s, {sizing}")
    with sized_stack(workdir, sizing, SETTINGS) as stack:
        loadgen = Loadgen(stack, workdir, stream_paths(stack, channels), streams, "s6",
                          reconnect=True, window=OPEN_WINDOW)
        publisher = HttpPublisher(stack, channels)
        try:
            rows["open_stats"] = loadgen.open(streams, 300)
            loadgen.ask("reset")
            publisher.start(rate)
            samples = churn_and_sample(stack, loadgen, streams, minutes)
            publisher.stop()
            final_seq = publisher.sent // CHANNELS
            got = wait_complete(loadgen, final_seq)
            stats = loadgen.ask("stats")
        finally:
            publisher.stop()
            loadgen.stop()
    rows.update(published=publisher.sent, publish_retries=publisher.retries,
                final_seq=final_seq, expected=streams * final_seq, report=got, stats=stats,
                load_after=load_average(),
                slopes=slopes(samples, min(2.0, minutes / 5)),
                redis=redis_growth(samples, min(2.0, minutes / 5)),
                loads=[point["load"] for point in samples])
    (workdir / "s6-samples.json").write_text(json.dumps(samples))
    (workdir / "s6.json").write_text(json.dumps(rows, indent=1))
    return rows


def report(rows: dict, command: str, minutes: float, before: str) -> str:
    """The markdown section: delivery checks, then per process its memory slope and verdict."""
    got, stats, sizing = rows["report"], rows["stats"], rows["sizing"]
    delivered = (got["events"] == rows["expected"] and got["gaps"] == 0 and got["dups"] == 0
                 and got["lost"] == 0 and got["min_last_seq"] == rows["final_seq"])
    loads = rows["loads"]
    out = [f"eventgate S6 — {command} — {minutes:.1f} min", f"machine: {before}",
           f"Whole stack (supervisord, Redis, web ×2, stream ×{sizing['stream_workers']}, "
           f"nginx ×{sizing['nginx_workers']}), nothing pinned, loadgen and the publisher on "
           f"the same two cores; load average during the run {loads[0]} … {loads[-1]}, "
           f"{rows['load_after']} after.", "",
           f"{stats['conns']:,} streams on {rows['channels']} channels for "
           f"{rows['minutes']:g} min; {rows['published']:,} events POSTed through nginx at "
           f"{rows['rate']:g}/s ({rows['publish_retries']} retried); "
           f"{stats['drops']:,} streams cut, {stats['reconnects']:,} reconnected with "
           f"Last-Event-ID.", "",
           "| check | measured | expected | verdict |", "|---|---|---|---|",
           f"| deliveries | {got['events']:,} | {rows['expected']:,} (every stream × "
           f"{rows['final_seq']} events of its channel) | {'ok' if delivered else 'MISSED'} |",
           f"| gaps / duplicates / `eventgate.lost` | {got['gaps']} / {got['dups']} / "
           f"{got['lost']} | 0 / 0 / 0 | {'ok' if delivered else 'MISSED'} |",
           f"| streams at the last event | lowest last sequence {got['min_last_seq']} | "
           f"{rows['final_seq']} | {'ok' if delivered else 'MISSED'} |",
           f"| delivery latency p50 / p99 / max | {got['p50_ms']:.0f} / {got['p99_ms']:.0f} / "
           f"{got['max_ms']:.0f} ms (replays after a reconnect included) | — | — |", "",
           "| process | mean RSS MiB | RSS first → last after warm-up, MiB | open files "
           "first → last | slope KiB/min | of it beyond peaks, KiB/min | flat if ≤ KiB/min | "
           "verdict |", "|---|---|---|---|---|---|---|---|"]
    for name, row in sorted(rows["slopes"].items()):
        out.append(f"| {name} | {row['mean_rss_kb'] / 1024:.1f} | {row['first_kb'] / 1024:.1f}"
                   f" → {row['last_kb'] / 1024:.1f} | {row['fds'][0]:,} → {row['fds'][1]:,} | "
                   f"{row['slope_kb_per_min']:+.1f} | {row['beyond_peaks_kb_per_min']:+.1f} | "
                   f"{row['bound_kb_per_min']:.0f} | {row['verdict']} |")
    if rows.get("redis"):
        grown = rows["redis"]
        parts = ", ".join(
            f"{label} {grown[key]['first']:,} → {grown[key]['last']:,} KiB "
            f"({grown[key]['slope']:+.1f} KiB/min)"
            for label, key in (("all it counts", "used_kb"), ("data", "dataset_kb"),
                               ("client buffers", "clients_kb"), ("AOF buffer", "aof_kb")))
        out += ["", f"Redis's own count after warm-up (INFO memory): {parts}; keys "
                f"{grown['keys']['first']:,} → {grown['keys']['last']:,}."]
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=MINUTES)
    parser.add_argument("--streams", type=int, default=STREAMS)
    parser.add_argument("--rate", type=float, default=RATE, help="events/s published")
    parser.add_argument("--again", type=Path, metavar="DIR",
                        help="report a finished run again from its raw results (s6.json and "
                        "s6-samples.json in DIR), with this version's verdicts")
    args = parser.parse_args()
    if args.again:
        rows = json.loads((args.again / "s6.json").read_text())
        samples = json.loads((args.again / "s6-samples.json").read_text())
        rows["slopes"] = slopes(samples, min(2.0, rows["minutes"] / 5))
        rows["redis"] = redis_growth(samples, min(2.0, rows["minutes"] / 5))
        print(report(rows, f"bench/soak.py (again from {args.again})", rows["minutes"],
                     f"load average {rows['load_before']} before"))
        return
    started = time.monotonic()
    before = f"load average {load_average()}"
    workdir = bench_dir("s6")
    rows = run(workdir, args.minutes, args.streams, args.rate)
    command = (f"bench/soak.py --minutes {args.minutes:g} --streams {args.streams} "
               f"--rate {args.rate:g}")
    print(report(rows, command, (time.monotonic() - started) / 60, before))
    print(f"raw results: {workdir / 's6.json'}")


if __name__ == "__main__":
    main()
