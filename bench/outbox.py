"""The outbox bench: what publishing through the transactional outbox costs against publishing
straight to Redis after the commit, on PostgreSQL and on SQLite.

``.venv/bin/python bench/outbox.py [--quick]`` (or ``bench/run.py --only outbox``) starts its own
redis-server (bench/run.py's: AOF, fsync every second) and its own PostgreSQL (tests/postgres.py's
PostgresServer, with durability switched back on: ``fsync``, ``synchronous_commit`` and
``full_page_writes`` as a production server has them), and a SQLite file in WAL mode. For each
database, an app's transaction is "UPDATE one row (the thread's own) + publish one event +
COMMIT", 100-byte data, one channel per app thread:

- **outbox**: ``Outbox.publish`` in the transaction, then ``Outbox.wake()`` after the commit,
  which is what ``EventGate(app, db=db)`` does: the relay thread of this same process publishes
  the row to Redis and marks it.
- **direct**: UPDATE + COMMIT, then ``Publisher.publish`` (one Lua round trip).

Measured:
- **throughput**: 1 and 4 app threads run transactions back to back for a few seconds; the rate
  is transactions / (time until the last event is confirmed in Redis): for the outbox, until the
  relay marked every row (``Relay.relayed``); for direct, until the last publish returned.
- **latency**: one thread paced at 200 transactions/s; a subscriber process (plain redis-py
  pub/sub on the channel's live channel) stamps each event when it arrives. Outbox: receive time
  minus the time just after the commit returned; direct: minus the time just before the publish
  call. CLOCK_MONOTONIC is system-wide, so the two processes' stamps compare.
- **relay drain**: rows written with no relay running, then relay rounds in one thread: rows
  per second, and how much of that time goes to Redis (``Publisher.store_rows``: one script run
  per chunk of a round's rows, each row under its own idempotency key) rather than to the
  database's claim and mark.

Pinning (2 cores, as bench/run.py): this process — the app threads and the relay thread, what is
under test — on core 0; redis-server, PostgreSQL (postmaster and every backend, which inherit
its affinity) and the subscriber on core 1. Raw results go to var/bench/<time>-outbox/.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import redis
from sqlalchemy import Column, Integer, MetaData, Table, create_engine, delete, event, insert
from sqlalchemy import update as sql_update
from sqlalchemy.engine import Engine

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as base  # noqa: E402  - bench/run.py: processes, pinning, Redis, the machine line
from run import LOAD_CORE, SERVER_CORE, Process  # noqa: E402

from eventgate.shared import keys  # noqa: E402
from eventgate.shared.outbox import Outbox  # noqa: E402
from eventgate.shared.publisher import Publisher  # noqa: E402
from tests.postgres import PostgresServer  # noqa: E402  - the tests' throwaway cluster

#: Data padding: events of about 100 bytes of JSON, as the other benches publish.
PAD = "x" * 80
DATABASES = ("postgresql", "sqlite")
MODES = ("direct", "outbox")


@dataclass
class Plan:
    repeats: int
    seconds: float  # per throughput point
    threads: list
    latency_rate: float  # transactions/s
    latency_seconds: float
    drain_rows: int
    durable: bool = True  # fsync on every commit (PostgreSQL and SQLite), as in production


FULL = Plan(3, 2.0, [1, 4], 200.0, 5.0, 2000)
QUICK = Plan(1, 1.5, [1, 4], 200.0, 3.0, 1000)


def log(message: str) -> None:
    base.log(message)


# -- the servers ---------------------------------------------------------------------------------


class DurablePostgres(PostgresServer):
    """The tests' PostgreSQL with a production server's durability: commits wait for the WAL
    flush, as the app's would (later lines of postgresql.conf win). ``durable=False`` keeps the
    tests' settings (no fsync): what the CPU alone allows."""

    def __init__(self, durable: bool = True) -> None:
        super().__init__()
        self.durable = durable

    def _configure(self) -> None:
        super()._configure()
        if not self.durable:
            return
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write("# bench/outbox.py: durable, as in production\n"
                       "fsync = on\nsynchronous_commit = on\nfull_page_writes = on\n")

    def pin(self, core: str) -> None:
        """Pin the postmaster and its processes; backends forked later inherit it."""
        pids = [self.pid, *base.children(self.pid)] if self.pid else []
        for pid in pids:
            subprocess.run(["taskset", "-a", "-cp", core, str(pid)], capture_output=True,
                           check=True)


def sqlite_engine(path: Path, durable: bool = True) -> Engine:
    """WAL mode; ``synchronous`` FULL (SQLite's default: each commit is flushed) or OFF."""
    engine = create_engine(f"sqlite:///{path}", pool_size=8)

    @event.listens_for(engine, "connect")
    def _settings(connection, _record) -> None:  # noqa: ANN001
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute(f"PRAGMA synchronous={'FULL' if durable else 'OFF'}")

    return engine


class Subscriber:
    """The subscriber process (``--subscribe``): receive times per sequence number."""

    def __init__(self, workdir: Path, redis_url: str, channels: list[str]) -> None:
        self.process = Process("subscriber", base.pinned(LOAD_CORE, [
            sys.executable, __file__, "--subscribe", redis_url, *channels]), workdir, stdin=True)
        self.process.answer()  # subscribed

    def count(self) -> int:
        return self.process.ask("count")["received"]

    def take(self) -> dict[int, float]:
        return {int(k): v for k, v in self.process.ask("take")["times"].items()}

    def stop(self) -> None:
        self.process.stop()


def subscribe(redis_url: str, channels: list[str]) -> None:
    """The subscriber process's loop: stamps each event's ``"s"`` with CLOCK_MONOTONIC as it
    arrives; ``count`` and ``take`` (hand over and forget) on stdin."""
    client = redis.Redis.from_url(redis_url)
    pubsub = client.pubsub()
    pubsub.subscribe(*[keys.live_channel(c) for c in channels])
    confirmed = 0
    while confirmed < len(channels):
        message = pubsub.get_message(timeout=5)
        confirmed += bool(message and message["type"] == "subscribe")
    times: dict[int, float] = {}
    lock = threading.Lock()

    def receive() -> None:
        for message in pubsub.listen():
            stamp = time.monotonic()
            if message["type"] != "message":
                continue
            data = json.loads(message["data"].split(b"\n", 3)[3])
            with lock:
                times[data["s"]] = stamp

    threading.Thread(target=receive, daemon=True).start()
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        with lock:
            if line.strip() == "take":
                answer, times = {"times": times}, {}
            else:
                answer = {"received": len(times)}
        print(json.dumps(answer), flush=True)


# -- the app ------------------------------------------------------------------------------------


class App:
    """One database's app: a table of rows the transactions update, the outbox, the publisher."""

    def __init__(self, name: str, engine: Engine, redis_url: str) -> None:
        self.name = name
        self.engine = engine
        self.publisher = Publisher.from_url(redis_url)
        self.outbox = Outbox(engine, self.publisher)
        self.outbox.create_tables()
        self.rows = Table("bench_rows", MetaData(), Column("id", Integer, primary_key=True),
                          Column("n", Integer, nullable=False))
        self.rows.create(engine, checkfirst=True)
        with engine.begin() as connection:
            connection.execute(insert(self.rows), [{"id": i, "n": 0} for i in range(16)])
        self.seq = 0
        self._seq_lock = threading.Lock()

    def next_seq(self) -> int:
        with self._seq_lock:
            self.seq += 1
            return self.seq

    def transaction(self, mode: str, thread: int, channel: str) -> tuple[int, float, float]:
        """One app transaction; returns its sequence number, the time just after the commit
        returned and the time just before the direct publish (the commit's for the outbox)."""
        seq = self.next_seq()
        data = {"s": seq, "p": PAD}
        with self.engine.begin() as connection:
            connection.execute(sql_update(self.rows).where(self.rows.c.id == thread)
                               .values(n=self.rows.c.n + 1))
            if mode == "outbox":
                self.outbox.publish(connection, channel, data, "bench")
        committed = time.monotonic()
        if mode == "outbox":
            self.outbox.wake()
            return seq, committed, committed
        called = time.monotonic()
        self.publisher.publish(channel, data, "bench")
        return seq, committed, called

    def relayed(self) -> int:
        return self.outbox.relay_.relayed

    def clear(self) -> None:
        """Forget relayed rows between points (the relay's purge would, 60 s later)."""
        with self.engine.begin() as connection:
            connection.execute(delete(self.outbox.table)
                               .where(self.outbox.table.c.event_id.is_not(None)))

    def close(self) -> None:
        self.outbox.stop()
        self.engine.dispose()


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll ``check`` every millisecond; returns the time it first held."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.001)
    return time.monotonic()


# -- the measurements ---------------------------------------------------------------------------


def throughput(app: App, mode: str, threads: int, seconds: float) -> dict:
    relayed0 = app.relayed()
    counts = [0] * threads
    errors: list[str] = []
    began = time.monotonic()
    stop_at = began + seconds

    def work(index: int) -> None:
        channel = f"bench.outbox.{app.name}.t{index}"
        try:
            while time.monotonic() < stop_at:
                app.transaction(mode, index, channel)
                counts[index] += 1
        except Exception as error:  # noqa: BLE001 - reported in the row
            errors.append(repr(error))

    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    ended = time.monotonic()
    total = sum(counts)
    confirmed = ended
    if mode == "outbox":
        confirmed = wait_for(lambda: app.relayed() - relayed0 >= total, 60, "the relay")
    app.clear()
    return {"database": app.name, "mode": mode, "threads": threads, "transactions": total,
            "loop_seconds": ended - began, "tx_per_s": total / (confirmed - began),
            "committed_per_s": total / (ended - began), "drain_lag_s": confirmed - ended,
            "errors": errors[:3]}


def latency(app: App, mode: str, plan: Plan, subscriber: Subscriber, channel: str) -> dict:
    count = int(plan.latency_rate * plan.latency_seconds)
    stamps: dict[int, float] = {}
    began = time.monotonic()
    for i in range(count):
        pause = began + i / plan.latency_rate - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        seq, committed, called = app.transaction(mode, 0, channel)
        stamps[seq] = committed if mode == "outbox" else called
    timed_out = False
    try:
        wait_for(lambda: subscriber.count() >= count, 20, "every event at the subscriber")
    except TimeoutError:
        timed_out = True
    received = subscriber.take()
    millis = sorted((received[s] - t) * 1e3 for s, t in stamps.items() if s in received)
    app.clear()
    return {"database": app.name, "mode": mode, "rate": plan.latency_rate,
            "sent": count, "received": len(millis), "timed_out": timed_out,
            "p50_ms": percentile(millis, 50), "p99_ms": percentile(millis, 99),
            "max_ms": millis[-1] if millis else None}


def percentile(sorted_values: list[float], pct: float) -> float | None:
    if not sorted_values:
        return None
    index = min(len(sorted_values) - 1, round(pct / 100 * (len(sorted_values) - 1)))
    return sorted_values[index]


class TimedPublisher:
    """The app's Publisher, timing each ``store_rows`` (the relay's Redis round trips)."""

    def __init__(self, publisher: Publisher) -> None:
        self._publisher = publisher
        self.seconds = 0.0
        self.calls = 0

    def store_rows(self, *args, **kwargs):  # noqa: ANN002, ANN003, ANN201
        began = time.perf_counter()
        try:
            return self._publisher.store_rows(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - began
            self.calls += 1

    def __getattr__(self, name: str):  # noqa: ANN204
        return getattr(self._publisher, name)


def drain(app: App, rows: int) -> dict:
    """Rows written while no relay runs, then relayed in this thread."""
    app.outbox.stop()
    channels = [f"bench.outbox.{app.name}.drain{i}" for i in range(4)]
    with app.engine.begin() as connection:
        for start in range(0, rows, 100):
            drafts = [app.publisher.draft(channels[i % 4], {"s": i, "p": PAD}, "bench")
                      for i in range(start, min(rows, start + 100))]
            app.outbox.publish_many(connection, drafts)
    timed = TimedPublisher(app.publisher)
    relay = Outbox(app.engine, timed).relay_  # type: ignore[arg-type]
    began = time.perf_counter()
    relayed = 0
    while True:
        outcome = relay.round()
        relayed += outcome.relayed
        if not outcome.more:
            break
    seconds = time.perf_counter() - began
    app.clear()
    return {"database": app.name, "rows": relayed, "rows_per_s": relayed / seconds,
            "ms_per_row": seconds / max(relayed, 1) * 1e3,
            "store_us_per_row": timed.seconds / max(relayed, 1) * 1e6,
            "store_share": timed.seconds / seconds, "store_calls": timed.calls}


# -- the run ------------------------------------------------------------------------------------


def run(plan: Plan, workdir: Path) -> dict:
    """Every measurement on both databases; returns the rows (``bench/run.py --only outbox``)."""
    cores = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {int(SERVER_CORE)})  # app + relay threads; children pin themselves
    rows: dict = {"throughput": [], "latency": [], "drain": [], "durable": plan.durable}
    redis_server = base.Redis(workdir)
    postgres = DurablePostgres(plan.durable)
    try:
        postgres.start()
        postgres.pin(LOAD_CORE)
        postgres.create_database("bench")
        engines = {
            "postgresql": create_engine(postgres.url("bench"), pool_size=8),
            "sqlite": sqlite_engine(workdir / "outbox.sqlite", plan.durable),
        }
        for name in DATABASES:
            app = App(name, engines[name], redis_server.url)
            try:
                measure(app, plan, rows, workdir, redis_server.url)
            finally:
                app.close()
    finally:
        postgres.stop()
        redis_server.stop()
        os.sched_setaffinity(0, cores)
    (workdir / "outbox.json").write_text(json.dumps(rows, indent=1))
    return rows


def measure(app: App, plan: Plan, rows: dict, workdir: Path, redis_url: str) -> None:
    app.outbox.start()
    for threads in plan.threads:
        for repeat in range(plan.repeats):
            for mode in MODES:
                row = throughput(app, mode, threads, plan.seconds)
                rows["throughput"].append(row)
                log(f"throughput {app.name} {mode} {threads} thread(s) #{repeat + 1}: "
                    f"{row['tx_per_s']:,.0f} tx/s confirmed ({row['committed_per_s']:,.0f} "
                    f"committed/s, drained {row['drain_lag_s'] * 1e3:.0f} ms after the loop)"
                    + (f" errors {row['errors']}" if row["errors"] else ""))
    channel = f"bench.outbox.{app.name}.latency"
    subscriber = Subscriber(workdir, redis_url, [channel])
    try:
        for mode in MODES:
            row = latency(app, mode, plan, subscriber, channel)
            rows["latency"].append(row)
            log(f"latency {app.name} {mode} at {plan.latency_rate:.0f} tx/s: p50 "
                f"{row['p50_ms']:.2f} ms, p99 {row['p99_ms']:.2f} ms, "
                f"{row['received']}/{row['sent']} received")
    finally:
        subscriber.stop()
    row = drain(app, plan.drain_rows)
    rows["drain"].append(row)
    log(f"drain {app.name}: {row['rows_per_s']:,.0f} rows/s, {row['ms_per_row']:.3f} ms/row of "
        f"which Redis {row['store_us_per_row']:.0f} µs ({row['store_calls']} store_rows calls)")


def median_range(values: list[float], digits: int = 0) -> str:
    if not values:
        return "-"
    return (f"{statistics.median(values):,.{digits}f} "
            f"[{min(values):,.{digits}f}–{max(values):,.{digits}f}]")


def report(rows: dict, command: str, minutes: float, before: str) -> str:
    """The markdown tables."""
    out = [f"eventgate outbox bench — {command} — {minutes:.1f} min", f"machine: {before}",
           "App + relay threads on core 0; redis-server, PostgreSQL and the subscriber on core 1. "
           "A transaction: UPDATE a row + publish 1 event + COMMIT. Databases "
           + ("durable (PostgreSQL fsync and synchronous_commit on; SQLite WAL, synchronous "
              "FULL)." if rows.get("durable", True) else "without fsync (PostgreSQL fsync and "
              "synchronous_commit off; SQLite WAL, synchronous OFF)."), ""]
    out += ["| database | app threads | direct tx/s | outbox tx/s | outbox / direct | outbox "
            "drain after the loop, ms |",
            "|---|---|---|---|---|---|"]
    for name in DATABASES:
        for threads in sorted({r["threads"] for r in rows["throughput"]}):
            got = {mode: [r for r in rows["throughput"] if r["database"] == name
                          and r["threads"] == threads and r["mode"] == mode] for mode in MODES}
            if not got["direct"] or not got["outbox"]:
                continue
            direct = [r["tx_per_s"] for r in got["direct"]]
            outbox = [r["tx_per_s"] for r in got["outbox"]]
            lag = [r["drain_lag_s"] * 1e3 for r in got["outbox"]]
            out.append(f"| {name} | {threads} | {median_range(direct)} | {median_range(outbox)} "
                       f"| {statistics.median(outbox) / statistics.median(direct):.2f} | "
                       f"{median_range(lag)} |")
    out += ["", "| database | path | latency p50 ms | p99 ms | max ms | received |",
            "|---|---|---|---|---|---|"]
    for r in rows["latency"]:
        path = ("commit → relay → subscriber" if r["mode"] == "outbox"
                else "publish call → subscriber")
        out.append(f"| {r['database']} | {r['mode']} ({path}, {r['rate']:.0f} tx/s) | "
                   f"{r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['max_ms']:.2f} | "
                   f"{r['received']}/{r['sent']} |")
    out += ["", "| database | relay drain rows/s | µs per row | of which Redis µs (share) "
            "| rows | store_rows calls |", "|---|---|---|---|---|---|"]
    for r in rows["drain"]:
        out.append(f"| {r['database']} | {r['rows_per_s']:,.0f} | {r['ms_per_row'] * 1e3:.0f} | "
                   f"{r['store_us_per_row']:.0f} ({r['store_share'] * 100:.0f} %) | "
                   f"{r['rows']:,} | {r['store_calls']} |")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one repeat, shorter points")
    parser.add_argument("--no-fsync", action="store_true",
                        help="databases without fsync (the tests' PostgreSQL settings, SQLite "
                        "synchronous=OFF): the CPU's ceiling rather than the disk's")
    parser.add_argument("--subscribe", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.subscribe:
        subscribe(args.subscribe[0], args.subscribe[1:])
        return
    plan = QUICK if args.quick else FULL
    plan.durable = not args.no_fsync
    workdir = base.ROOT / "var" / "bench" / (time.strftime("%Y%m%d-%H%M%S") + "-outbox")
    workdir.mkdir(parents=True)
    before = base.machine()
    started = time.monotonic()
    rows = run(plan, workdir)
    command = " ".join([Path(sys.executable).name, "bench/outbox.py", *sys.argv[1:]])
    base.print_report(report(rows, command, (time.monotonic() - started) / 60, before),
                      workdir / "outbox.json")


if __name__ == "__main__":
    main()
