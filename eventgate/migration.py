"""Moving every channel log from one Redis to another (``eventgate migrate``): one Redis to a
Cluster, a Cluster to one Redis, or eventgate 0.2's key form to the current one — without
changing one event.

Why ids and fields exactly: a browser's cursor (Last-Event-ID) is an event id, and a reader
proves continuity with each event's ``prev``. An event copied under a new id would leave every
cursor pointing nowhere (``read_from`` would take it for a divergence and report a loss); a
rewritten ``prev`` would make the chain lie. So each entry is written with ``XADD key <its id>``
and its fields as they are, with the log's last generated id and expiry (eventgate/logcopy.py,
which also has the rule that lets a run resume, and refuses a destination holding other
events). The source is only read.

Idempotency records are copied too (``SET NX`` with their remaining time), between Redis of
one kind: a publisher that retries across the switch with the same key is still answered, not
stored twice. Between one Redis and a Cluster they are not: one Redis keeps a batch's ids in
one record, in the request's order, a Cluster one record per partition of the batch, and
neither can be rebuilt from the other (an id does not say which channel it belongs to; the
parts do not say how they interleave). Subject and status keys are not copied: stream workers
write them again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice

from redis.cluster import RedisCluster

from eventgate.logcopy import Conflict, LogCopy, copy_logs
from eventgate.shared import keys
from eventgate.shared.redisconn import Client, LazyCluster, connect

#: Logs copied together (eventgate/logcopy.py: a few round trips per batch).
LOG_BATCH = 64
#: Idempotency records read and written per round trip.
RECORD_BATCH = 200
#: SCAN's COUNT hint: keys looked at per SCAN call (per node under Cluster).
SCAN_COUNT = 1000


@dataclass(frozen=True)
class Endpoint:
    """What ``connect`` reads, for one side of a migration: a page of big events may take a
    while to read or write, so the timeout is a batch job's, not a web request's."""

    redis_url: str = field(repr=False)  # it may hold a password
    redis_pool_size: int = 4
    redis_timeout_seconds: float = 10.0
    redis_connect_timeout_seconds: float = 5.0


def open_client(url: str) -> Client:
    """A client for the Redis ``url`` names, of any form EVENTGATE_REDIS_URL takes (one Redis,
    Sentinel, Cluster). Raises RedisURLError (a ValueError) for a URL it cannot use."""
    return connect(Endpoint(url))


@dataclass
class Totals:
    """The running count of a migration, handed to the progress callback after every batch."""

    logs: int = 0  # logs found in the source (a channel with logs of both key forms has two)
    written: int = 0  # logs that got events
    events: int = 0  # events copied
    bytes: int = 0  # their ids, field names and values
    present: int = 0  # events the destination already held
    records: int | None = 0  # idempotency records copied; None: not between these two kinds
    conflicts: list[Conflict] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    @property
    def seconds(self) -> float:
        return time.monotonic() - self.started

    def add(self, copy: LogCopy) -> None:
        self.logs += 1
        self.events += copy.events
        self.bytes += copy.bytes
        self.present += copy.present
        self.written += copy.events > 0
        if copy.conflict is not None:
            self.conflicts.append(copy.conflict)

    def summary(self, dry_run: bool) -> str:
        """One line for the end of the run."""
        records = f", {self.records} idempotency records" if self.records else ""
        note = "" if self.records is not None else (
            " Idempotency records not copied: one Redis and a Cluster keep them in other forms."
        )
        if dry_run:
            return (
                f"dry run: {self.logs} logs, {self.events} events ({self.bytes} bytes)"
                f"{records} to copy, {self.present} events already there, "
                f"{len(self.conflicts)} conflicts, in {self.seconds:.2f} s; nothing written.{note}"
            )
        if not self.events and not self.records and not self.conflicts:
            return (
                f"nothing to copy: the destination already holds every event of the "
                f"{self.logs} logs ({self.present} events checked), in {self.seconds:.2f} s.{note}"
            )
        return (
            f"copied {self.events} events ({self.bytes} bytes) of {self.written} logs"
            f"{records}; {self.logs} logs seen, {self.present} events already there, "
            f"{len(self.conflicts)} conflicts, in {self.seconds:.2f} s.{note}"
        )


def migrate(
    source: Client,
    destination: Client,
    *,
    dry_run: bool = False,
    records: bool = True,
    same_redis: bool = False,
    on_progress: Callable[[Totals], None] | None = None,
) -> Totals:
    """Copy every channel log of ``source`` to ``destination`` (see the module's docstring), then
    the idempotency records (``records``; only between two Redis of one kind). ``same_redis``:
    the two are one Redis (a move of the key form in place), so a log already under its current
    key is its own copy and is skipped, and so are the records.

    A conflict stops only its log (``Totals.conflicts``). Raises RedisError when either side
    stops answering: what was copied stays, and running it again resumes."""
    totals = Totals()
    for batch in _batches(_in_key_order(source), LOG_BATCH):
        if same_redis:
            in_place = [key for key, channel in batch if key == keys.log_key(channel).encode()]
            batch = [(key, channel) for key, channel in batch if key not in in_place]
            pipe = source.pipeline(transaction=False)
            for key in in_place:
                pipe.xlen(key)
            for length in pipe.execute() if in_place else []:
                totals.add(LogCopy(present=length))
        for copy in copy_logs(source, destination, batch, dry_run=dry_run):
            totals.add(copy)
        if on_progress is not None:
            on_progress(totals)
    if records and not same_redis:
        if _is_cluster(source) == _is_cluster(destination):
            totals.records = copy_records(source, destination, dry_run=dry_run)
        else:
            totals.records = None
    return totals


def _is_cluster(client: Client) -> bool:
    return isinstance(client, (LazyCluster, RedisCluster))


def find_logs(client: Client) -> Iterator[tuple[bytes, str]]:
    """Every channel log (both key forms) and its channel, each once; SCAN, never KEYS (which
    blocks Redis). Under Cluster redis-py's ``scan_iter`` walks every primary."""
    seen: set[bytes] = set()  # SCAN may return a key twice
    for key in client.scan_iter(match=keys.LOG_PATTERN, count=SCAN_COUNT, _type="stream"):
        if key in seen:
            continue
        seen.add(key)
        try:
            channel = keys.channel_of_log(key.decode("utf-8"))
        except UnicodeDecodeError:
            continue
        if channel is not None:
            yield key, channel


def _in_key_order(source: Client) -> Iterator[tuple[bytes, str]]:
    """``find_logs``, eventgate 0.2's logs first (a second SCAN for the current ones). A channel
    may have both: its 0.2 history, and a log the current version started without it. Copied
    in this order they end up one after the other in the current log — the newer's first
    ``prev`` (``0-0``) tells readers where one history stops — whereas the 0.2 log, being
    older, could never go below the current one's events."""
    for legacy in (True, False):
        for key, channel in find_logs(source):
            if (key != keys.log_key(channel).encode()) == legacy:
                yield key, channel


def copy_records(source: Client, destination: Client, *, dry_run: bool = False) -> int:
    """Copy the idempotency records the destination lacks, under the same names, each with its
    remaining time; how many were copied (or would be). A record the destination has is kept:
    it is newer. Only between two Redis of one kind (the module's docstring)."""
    copied = 0
    batch: list[bytes] = []
    for key in source.scan_iter(match=keys.IDEMPOTENCY_PATTERN, count=SCAN_COUNT,
                                _type="string"):
        batch.append(key)
        if len(batch) >= RECORD_BATCH:
            copied += _copy_record_batch(source, destination, batch, dry_run)
            batch = []
    if batch:
        copied += _copy_record_batch(source, destination, batch, dry_run)
    return copied


def _copy_record_batch(
    source: Client, destination: Client, batch: list[bytes], dry_run: bool
) -> int:
    if dry_run:
        pipe = destination.pipeline(transaction=False)
        for name in batch:
            pipe.exists(name)
        return sum(1 for there in pipe.execute() if not there)
    pipe = source.pipeline(transaction=False)
    for key in batch:
        pipe.get(key)
        pipe.pttl(key)
    answers = pipe.execute()
    pipe = destination.pipeline(transaction=False)
    writes = 0
    for name, value, ttl in zip(batch, answers[::2], answers[1::2], strict=True):
        if value is None or ttl == -2:
            continue  # expired meanwhile
        pipe.set(name, value, nx=True, px=ttl if ttl > 0 else None)
        writes += 1
    return sum(1 for answer in pipe.execute() if answer) if writes else 0


def _batches(items: Iterable[tuple[bytes, str]], size: int) -> Iterator[list[tuple[bytes, str]]]:
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch

