"""What ``eventgate status`` and ``eventgate replay`` print: the ops commands' output, for a
terminal or a script.

``status`` reads what every stream worker and outbox relay wrote to Redis (shared/status.py)
plus Redis's memory and its channel logs' lengths; ``replay`` prints a channel's log after an
event id, in batches, with a progress bar on stderr when stderr is a terminal (or
``--progress``). Both only read Redis (``status`` also deletes expired worker records). Needs
the ``server`` extra (tqdm): eventgate/cli.py imports this module only when one of the two runs.
"""

from __future__ import annotations

import json
import sys
from typing import TextIO

import redis
from tqdm import tqdm

from eventgate.shared import keys
from eventgate.shared.events import START, Event, first_id, id_key, read_page
from eventgate.shared.status import log_lengths, outbox_overview, overview

REPLAY_BATCH = 1000


def print_status(client: redis.Redis, out: TextIO, *, as_json: bool, log_limit: int) -> None:
    """Print the overview; raises redis errors (the caller reports them)."""
    data = overview(client)
    lengths, complete = log_lengths(client, log_limit)
    data["logs"] = {"channels": len(lengths), "complete": complete,
                    "events": sum(lengths.values()), "lengths": lengths}
    outbox = outbox_overview(client)
    if outbox is not None:  # no relay runs: nothing to say about an outbox
        data["outbox"] = outbox
    if as_json:
        out.write(json.dumps(data, separators=(",", ":"), sort_keys=True) + "\n")
        return
    totals, workers = data["totals"], data["workers"]
    out.write(
        f"stream workers: {totals['workers']}   open streams: {totals['streams']}   "
        f"channels: {totals['channels']}   queued: {_bytes(totals['queued_bytes'])}   "
        f"delivered: {totals['delivered']}   lag p99: {_seconds(totals['lag_p99_seconds'])}\n"
    )
    columns = ("WORKER", "STREAMS", "CHANNELS", "QUEUED", "MAX QUEUE", "SLOW", "LAG P99",
               "DELIVERED", "REPLAYED", "LOST", "RECONNECTS", "REDIS")
    rows = [columns] + [
        (
            str(w.get("worker")), str(w.get("streams")), str(w.get("channels")),
            _bytes(w.get("queued_bytes")), _bytes(w.get("max_queued_bytes")),
            str(w.get("slow_disconnects")), _seconds(w.get("lag_p99_seconds")),
            str(w.get("delivered")), str(w.get("replayed")), str(w.get("lost")),
            str(w.get("reconnects")), "up" if w.get("redis_connected") else "DOWN",
        )
        for w in workers
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(columns))]
    for row in rows:
        out.write("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
                  .rstrip() + "\n")
    if not workers:
        out.write("(no stream worker has reported in the last few seconds)\n")
    if outbox is not None:
        out.write(_outbox_line(outbox))
    redis_info = data["redis"]
    out.write(f"redis: used memory {redis_info['used_memory_human']}\n")
    more = "" if complete else f" (first {log_limit} only)"
    out.write(f"logs: {len(lengths)} channels, {sum(lengths.values())} events{more}\n")
    for name, length in sorted(lengths.items(), key=lambda item: -item[1])[:10]:
        out.write(f"  {name}  {length}\n")


def replay(client: redis.Redis, channel: str, since: str, out: TextIO, *, as_json: bool,
           limit: int | None, progress: bool | None) -> int:
    """Print every event of ``channel`` after ``since`` (an event id, ``0`` for the whole log)
    oldest first, ``limit`` at most; returns how many. ``progress`` None: only on a terminal."""
    since = START if since in ("0", "") else since
    id_key(since)  # ValueError for a malformed id
    total = _remaining(client, channel, since)
    if limit is not None and total is not None:
        total = min(total, limit)
    show = sys.stderr.isatty() if progress is None else progress
    printed = 0
    with tqdm(total=total, unit="ev", file=sys.stderr, disable=not show, leave=False) as bar:
        position = since
        while limit is None or printed < limit:
            count = REPLAY_BATCH if limit is None else min(REPLAY_BATCH, limit - printed)
            entries = read_page(client, channel, position, count)
            for entry_id, fields in entries:
                event = Event.from_entry(channel, entry_id, fields)
                out.write(_line(event, as_json) + "\n")
                position = event.id
            printed += len(entries)
            bar.update(len(entries))
            if len(entries) < count:
                break
    out.flush()
    return printed


def _remaining(client: redis.Redis, channel: str, since: str) -> int | None:
    """How many entries follow ``since``: exact when ``since`` is before the log's first entry
    (the whole log), else unknown (None; the bar then counts without a total)."""
    oldest = first_id(client, channel)
    if oldest is None:
        return 0
    if id_key(since) < id_key(oldest):
        return client.xlen(keys.log_key(channel))
    return None


def _line(event: Event, as_json: bool) -> str:
    if as_json:
        return json.dumps(event.to_json(), ensure_ascii=False, separators=(",", ":"))
    return f"{event.id} {event.type} {event.data}"


def _outbox_line(outbox: dict) -> str:
    # rows and age are None while the relay cannot read its database (its last_error says why)
    oldest, rows = outbox["oldest_seconds"], outbox["rows"]
    age = f"{oldest:.1f} s" if isinstance(oldest, (int, float)) else "-"
    error = f"   last error: {outbox['last_error']}" if outbox.get("last_error") else ""
    return (f"outbox: relays: {outbox['relays']}   waiting rows: {'-' if rows is None else rows}   "
            f"oldest: {age}   relayed: {outbox['relayed']}   failed: {outbox['failed']}{error}\n")


def _bytes(value: object) -> str:
    if not isinstance(value, (int, float)):
        return "-"
    for unit in ("B", "KiB", "MiB"):
        if value < 1024:
            return f"{value:.0f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def _seconds(value: object) -> str:
    if isinstance(value, (int, float)):
        return f"{value * 1000:g} ms"
    return str(value) if value else "-"
