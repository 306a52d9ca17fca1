"""Moving every channel log from one Redis to another (``eventgate migrate``): one Redis to a
Cluster, a Cluster to one Redis, or eventgate 0.2's key form to the current one — without
changing one event.

Why ids and fields exactly: a browser's cursor (Last-Event-ID) is an event id, and a reader
proves continuity with each event's ``prev``. An event copied under a new id would leave every
cursor pointing nowhere (``read_from`` would take it for a divergence and report a loss); a
rewritten ``prev`` would make the chain lie. So each entry is written with ``XADD key <its id>``
and its fields as they are; then the stream's last generated id (``XSETID``: a log whose newest
events were trimmed or deleted still chains the next publish to the right ``prev``) and its
expiry (``PTTL`` → ``PEXPIRE``) follow. The source is only read.

Why it can run again, and stop anywhere: a Redis Stream only appends — an id at or below its last
generated id can never be added — so a copy resumes after the destination's last id. Before that,
the destination's log is checked against the source's. With G its last generated id, F its
oldest entry and B the point its chain says precedes all it holds (F's ``prev``, or G when it
holds no entry):

- source entries at or below B are history the destination has moved past (copied, then trimmed
  there); B itself must be in the source when it lies within the source's range;
- source entries in (B, G] must be exactly the destination's entries there — leaving out the
  destination's entries older than the source's oldest (history the source has trimmed) and
  newer than its newest (publishes made on the destination since the switch);
- source entries after G are copied.

Anything else is a conflict — typically an event published on the source after the destination
took new events of its own, which can never be inserted below them: that log is left as it is,
and the others are copied. Idempotency records are copied too (``SET NX`` with their remaining
time): a publisher that retries across the switch with the same key is still answered, not
stored twice. Subject and status keys are not copied: stream workers write them again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import zip_longest

import redis

from eventgate.shared import keys
from eventgate.shared.events import READ_BATCH, START, id_key
from eventgate.shared.redisconn import Client, connect

#: Entries read and written per round trip.
PAGE = READ_BATCH
#: Idempotency records read and written per round trip.
RECORD_BATCH = 200
#: SCAN's COUNT hint: keys looked at per SCAN call (per node under Cluster).
SCAN_COUNT = 1000

#: A stream entry as redis-py returns it: id and fields, bytes.
Entry = tuple[bytes, dict]


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


@dataclass(frozen=True)
class Conflict:
    """A log the destination holds differently, and so left as it is: ``reason`` is a sentence
    (it says so when a publisher raced the copy and some events were written before)."""

    channel: str
    reason: str


@dataclass
class LogCopy:
    """What copying one log did (or, in a dry run, would do)."""

    events: int = 0
    bytes: int = 0
    present: int = 0
    conflict: Conflict | None = None


@dataclass
class Totals:
    """The running count of a migration, handed to the progress callback after every log."""

    logs: int = 0  # logs found in the source (a channel with logs of both key forms has two)
    written: int = 0  # logs that got events
    events: int = 0  # events copied
    bytes: int = 0  # their ids, field names and values
    present: int = 0  # events the destination already held
    records: int = 0  # idempotency records copied
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
        if dry_run:
            return (
                f"dry run: {self.logs} logs, {self.events} events ({self.bytes} bytes)"
                f"{records} to copy, {self.present} events already there, "
                f"{len(self.conflicts)} conflicts; nothing written."
            )
        if not self.events and not self.records and not self.conflicts:
            return (
                f"nothing to copy: the destination already holds every event of the "
                f"{self.logs} logs ({self.present} events checked), in "
                f"{self.seconds:.2f} s."
            )
        return (
            f"copied {self.events} events ({self.bytes} bytes) of {self.written} logs"
            f"{records}; {self.logs} logs seen, {self.present} events already there, "
            f"{len(self.conflicts)} conflicts, in {self.seconds:.2f} s."
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
    the idempotency records (``records``). ``same_redis``: the two are one Redis (a move of the
    key form in place), so a log already under its current key is its own copy and is skipped.

    A conflict stops only its log (``Totals.conflicts``). Raises RedisError when either side
    stops answering: what was copied stays, and running it again resumes."""
    totals = Totals()
    for key, channel in find_logs(source):
        target = keys.log_key(channel)
        if same_redis and key == target:
            totals.add(LogCopy(present=source.xlen(key)))
        else:
            totals.add(copy_log(source, destination, key, channel, dry_run=dry_run))
        if on_progress is not None:
            on_progress(totals)
    if records:
        totals.records = copy_records(source, destination, dry_run=dry_run)
    return totals


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


@dataclass(frozen=True)
class Head:
    """What ``XINFO STREAM`` says of a log's ends."""

    last_generated: str
    first: Entry | None
    last: Entry | None


def read_head(client: Client, key: bytes | str) -> Head | None:
    """The ends of the log at ``key``; None when there is no such key."""
    try:
        info = client.xinfo_stream(key)
    except redis.ResponseError as error:
        if "no such key" in str(error).lower():
            return None
        raise
    return Head(_text(info["last-generated-id"]), info["first-entry"], info["last-entry"])


def copy_log(
    source: Client, destination: Client, key: bytes, channel: str, *, dry_run: bool = False
) -> LogCopy:
    """Copy the log at ``key`` in ``source`` to ``channel``'s log in ``destination``, after
    checking what the destination holds already (module docstring)."""
    target = keys.log_key(channel)
    head = read_head(source, key)
    if head is None:  # expired since the scan
        return LogCopy()
    there = read_head(destination, target)
    result = LogCopy()
    after = START
    if there is not None:
        result.present, reason = _compare(source, destination, key, target, head, there)
        if reason is not None:
            result.conflict = Conflict(channel, f"{reason}; its log was left as it is.")
            return result
        after = there.last_generated
    for page in _pages(source, key, f"({after}", "+"):
        reason = None if dry_run else _append(destination, target, page)
        if reason is not None:
            page = page[: reason[0]]
        result.events += len(page)
        result.bytes += sum(_entry_bytes(entry) for entry in page)
        if reason is not None:
            result.conflict = Conflict(channel, reason[1])
            return result
        after = _text(page[-1][0])
    if not dry_run:
        _finish(source, destination, key, target, after, exists=there is not None or
                result.events > 0)
    return result


def _compare(
    source: Client, destination: Client, key: bytes, target: str, head: Head, there: Head
) -> tuple[int, str | None]:
    """How many source entries the destination holds identically, and why the destination's
    log is no copy of the source's (None when it is one)."""
    if head.first is None or head.last is None:
        return 0, None  # the source holds no entry: nothing can disagree
    first, last = _text(head.first[0]), _text(head.last[0])
    before = _text(there.first[1].get(b"prev", START)) if there.first else there.last_generated
    if (before != START and id_key(first) <= id_key(before) <= id_key(last)
            and not source.xrange(key, before, before)):
        return 0, (f"the destination's log follows event {before}, which the source's does "
                   "not hold")
    upto = min(there.last_generated, last, key=id_key)
    if id_key(upto) <= id_key(before):
        return 0, None
    # The destination's entries older than the source's oldest are the source's trimmed history.
    lowest = f"({before}" if id_key(before) >= id_key(first) else first
    ours = _entries(source, key, f"({before}", upto)
    theirs = _entries(destination, target, lowest, upto)
    present = 0
    for mine, other in zip_longest(ours, theirs):
        if mine != other:
            return present, _difference(mine, other, there.last_generated)
        present += 1
    return present, None


def _difference(mine: Entry | None, other: Entry | None, moved_to: str) -> str:
    if mine is not None and other is not None and mine[0] == other[0]:
        return f"event {_text(mine[0])} differs between the source and the destination"
    if mine is not None and (other is None or id_key(_text(mine[0])) < id_key(_text(other[0]))):
        return (f"the source's event {_text(mine[0])} is missing from the destination, whose "
                f"log has moved past it (to {moved_to}): the destination took events of its "
                "own before this one was copied, and an id below them can never be added")
    assert other is not None
    return f"the destination holds an event the source does not ({_text(other[0])})"


def _append(destination: Client, target: str, page: list[Entry]) -> tuple[int, str] | None:
    """XADD a page under its own ids, pipelined. When the destination refused an id (its log
    moved meanwhile: a publisher writes to it), how many were added before, and why."""
    pipe = destination.pipeline(transaction=False)
    for entry_id, fields in page:
        pipe.xadd(target, fields, id=entry_id)
    answers = pipe.execute(raise_on_error=False)
    for index, ((entry_id, _), answer) in enumerate(zip(page, answers, strict=True)):
        if isinstance(answer, redis.ResponseError) and "smaller" in str(answer):
            return index, (
                f"the destination refused event {_text(entry_id)}: its log moved while it was "
                "copied (something publishes to it); the events before it were copied"
            )
        if isinstance(answer, Exception):
            raise answer
    return None


def _finish(
    source: Client, destination: Client, key: bytes, target: str, copied_to: str, *,
    exists: bool,
) -> None:
    """The log's last generated id and expiry, read from the source once its entries are
    copied. The id moves only when the source holds nothing newer than what was copied (an
    event that arrived meanwhile must be copied first, by the next run)."""
    pipe = source.pipeline(transaction=False)
    pipe.xinfo_stream(key)
    pipe.pttl(key)
    info, ttl = pipe.execute(raise_on_error=False)
    if isinstance(info, Exception) or isinstance(ttl, Exception):
        return  # the source's log expired meanwhile
    last_generated = _text(info["last-generated-id"])
    newest = info["last-entry"]
    caught_up = newest is None or id_key(_text(newest[0])) <= id_key(copied_to)
    if caught_up and id_key(last_generated) > id_key(copied_to):
        if exists:
            destination.execute_command("XSETID", target, last_generated)
        else:  # an emptied log: an entry trimmed as it is added leaves the id, and no entry
            destination.xadd(target, {"type": "", "data": "", "prev": START},
                             id=last_generated, maxlen=0, approximate=False)
            exists = True
    if exists and ttl > 0:
        remaining = destination.pttl(target)
        if remaining == -1 or remaining < ttl:  # never shorten what publishes there extended
            destination.pexpire(target, ttl)


def copy_records(source: Client, destination: Client, *, dry_run: bool = False) -> int:
    """Copy the idempotency records the destination lacks, each with its remaining time; how
    many were copied (or would be). A record the destination has is kept: it is newer."""
    copied = 0
    batch: list[bytes] = []
    for key in source.scan_iter(match=keys.idempotency_key("*"), count=SCAN_COUNT,
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
    prefix = len(keys.idempotency_key(""))
    names = [keys.idempotency_key(key.decode("utf-8")[prefix:]) for key in batch]
    if dry_run:
        pipe = destination.pipeline(transaction=False)
        for name in names:
            pipe.exists(name)
        return sum(1 for there in pipe.execute() if not there)
    pipe = source.pipeline(transaction=False)
    for key in batch:
        pipe.get(key)
        pipe.pttl(key)
    answers = pipe.execute()
    pipe = destination.pipeline(transaction=False)
    writes = 0
    for name, value, ttl in zip(names, answers[::2], answers[1::2], strict=True):
        if value is None or ttl == -2:
            continue  # expired meanwhile
        pipe.set(name, value, nx=True, px=ttl if ttl > 0 else None)
        writes += 1
    return sum(1 for answer in pipe.execute() if answer) if writes else 0


def _pages(client: Client, key: bytes | str, low: str, high: str) -> Iterator[list[Entry]]:
    """The entries of ``key`` from ``low`` to ``high`` (XRANGE bounds), a page at a time."""
    while True:
        page = client.xrange(key, min=low, max=high, count=PAGE)
        if page:
            yield page
        if len(page) < PAGE:
            return
        low = f"({_text(page[-1][0])}"


def _entries(client: Client, key: bytes | str, low: str, high: str) -> Iterable[Entry]:
    for page in _pages(client, key, low, high):
        yield from page


def _entry_bytes(entry: Entry) -> int:
    entry_id, fields = entry
    return len(entry_id) + sum(len(name) + len(value) for name, value in fields.items())


def _text(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value
