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
from itertools import islice, zip_longest
from typing import NamedTuple

import redis

from eventgate.shared import keys
from eventgate.shared.events import READ_BATCH, START, id_key
from eventgate.shared.redisconn import Client, connect

#: Entries of one long log read and written per round trip.
PAGE = READ_BATCH
#: Logs handled together: their heads, their first pages and the writes of those each go in one
#: pipeline, so that a short log costs a few round trips per batch, not per log.
LOG_BATCH = 64
#: Entries of each log in the batch's first read. A longer log goes on alone, PAGE at a time.
#: The batch holds at most LOG_BATCH × FIRST_PAGE events in memory (128 MiB of the biggest
#: events the default EVENTGATE_MAX_EVENT_BYTES allows; far less of ordinary ones).
FIRST_PAGE = 32
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
    for batch in _batches(find_logs(source), LOG_BATCH):
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
    """What ``XINFO STREAM`` and ``PTTL`` said of a log, and when (``time.monotonic()``)."""

    last_generated: str
    first: Entry | None
    last: Entry | None
    ttl_ms: int
    read_at: float


def read_heads(client: Client, names: list[bytes] | list[str]) -> list[Head | None]:
    """The heads of the logs ``names`` (None for a missing key), in one pipeline."""
    pipe = client.pipeline(transaction=False)
    for name in names:
        pipe.xinfo_stream(name)
        pipe.pttl(name)
    read_at = time.monotonic()  # before asking: a remaining time computed from it errs short
    answers = pipe.execute(raise_on_error=False) if names else []
    heads: list[Head | None] = []
    for info, ttl in zip(answers[::2], answers[1::2], strict=True):
        if isinstance(info, redis.ResponseError) and "no such key" in str(info).lower():
            heads.append(None)
            continue
        for answer in (info, ttl):
            if isinstance(answer, Exception):
                raise answer
        heads.append(Head(_text(info["last-generated-id"]), info["first-entry"],
                          info["last-entry"], int(ttl), read_at))
    return heads


@dataclass
class _Log:
    """One log being copied: where it is read and written, and how far it got."""

    key: bytes
    channel: str
    target: str
    head: Head
    there: Head | None
    result: LogCopy
    after: str = START  # the newest id the destination holds (or passed)


def copy_logs(
    source: Client, destination: Client, batch: list[tuple[bytes, str]], *,
    dry_run: bool = False,
) -> list[LogCopy]:
    """Copy a batch of ``find_logs``'s logs, checking first what the destination holds of them
    (module docstring). Short logs cost a few round trips for the whole batch; a longer one
    goes on alone, PAGE entries a round trip."""
    results = [LogCopy() for _ in batch]
    heads = read_heads(source, [key for key, _ in batch])
    targets = [keys.log_key(channel) for _, channel in batch]
    theres = read_heads(destination, targets)
    logs = [
        _Log(key, channel, target, head, there, result,
             there.last_generated if there is not None else START)
        for (key, channel), target, head, there, result in zip(
            batch, targets, heads, theres, results, strict=True)
        if head is not None  # else expired since the scan
    ]
    _check(source, destination, [log for log in logs if log.there is not None])
    todo = [log for log in logs if log.result.conflict is None]
    pipe = source.pipeline(transaction=False)
    for log in todo:
        pipe.xrange(log.key, min=f"({log.after}", count=FIRST_PAGE)
    pages = pipe.execute() if todo else []
    _write_first_pages(destination, todo, pages, dry_run)
    for log, page in zip(todo, pages, strict=True):
        if len(page) == FIRST_PAGE and log.result.conflict is None:
            _copy_rest(source, destination, log, dry_run)
    return results


class _Window(NamedTuple):
    """Where a source log and the destination's must agree (module docstring: B, G)."""

    before: str  # B
    upto: str  # the lower of G and the source's newest id
    lowest: str  # XRANGE min for the destination's side
    check_before: bool  # B lies within the source's range, so the source must hold it


def _window(head: Head, there: Head) -> _Window | None:
    if head.first is None or head.last is None:
        return None  # the source holds no entry: nothing can disagree
    first, last = _text(head.first[0]), _text(head.last[0])
    before = (_text(there.first[1].get(b"prev", START)) if there.first is not None
              else there.last_generated)
    upto = min(there.last_generated, last, key=id_key)
    check_before = before != START and id_key(first) <= id_key(before) <= id_key(last)
    if id_key(upto) <= id_key(before) and not check_before:
        return None
    # The destination's entries older than the source's oldest are the source's trimmed history.
    lowest = f"({before}" if id_key(before) >= id_key(first) else first
    return _Window(before, upto, lowest, check_before)


def _check(source: Client, destination: Client, logs: list[_Log]) -> None:
    """Sets each log's ``present`` count, or its conflict."""
    windows = [(log, window) for log in logs
               if log.there is not None and (window := _window(log.head, log.there))]
    ours, theirs = source.pipeline(transaction=False), destination.pipeline(transaction=False)
    for log, window in windows:
        ours.xrange(log.key, min=window.before, max=window.before)
        ours.xrange(log.key, min=f"({window.before}", max=window.upto, count=FIRST_PAGE)
        theirs.xrange(log.target, min=window.lowest, max=window.upto, count=FIRST_PAGE)
    if not windows:
        return
    read, other = ours.execute(), theirs.execute()
    for (log, window), held, mine, their in zip(
            windows, read[::2], read[1::2], other, strict=True):
        assert log.there is not None
        moved_to = log.there.last_generated
        if window.check_before and not held:
            reason: str | None = (f"the destination's log follows event {window.before}, "
                                  "which the source's does not hold")
        elif FIRST_PAGE in (len(mine), len(their)):  # a long overlap: compared a page at a time
            log.result.present, reason = _agree(
                _entries(source, log.key, f"({window.before}", window.upto),
                _entries(destination, log.target, window.lowest, window.upto), moved_to)
        else:
            log.result.present, reason = _agree(mine, their, moved_to)
        if reason is not None:
            log.result.conflict = Conflict(log.channel, f"{reason}; its log was left as it is.")


def _agree(ours: Iterable[Entry], theirs: Iterable[Entry], moved_to: str) -> tuple[int, str | None]:
    """How many entries the two sides hold alike, and why they differ (None when they don't)."""
    present = 0
    for mine, other in zip_longest(ours, theirs):
        if mine != other:
            return present, _difference(mine, other, moved_to)
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


def _write_first_pages(
    destination: Client, logs: list[_Log], pages: list[list[Entry]], dry_run: bool
) -> None:
    """XADD each log's first page, and finish the logs it completes, in one pipeline."""
    pipe = destination.pipeline(transaction=False)
    sizes = []
    for log, page in zip(logs, pages, strict=True):
        finishing = [] if dry_run or len(page) == FIRST_PAGE else _finishing(log, page)
        for entry_id, fields in [] if dry_run else page:
            pipe.xadd(log.target, fields, id=entry_id)
        for command in finishing:
            pipe.execute_command(*command)
        sizes.append(len(finishing))
    answers = pipe.execute(raise_on_error=False) if logs and not dry_run else []
    position = 0
    for log, page, finishing in zip(logs, pages, sizes, strict=True):
        added = 0 if dry_run else len(page)
        _count(log, page, answers[position : position + added], dry_run)
        for answer in answers[position + added : position + added + finishing]:
            if isinstance(answer, Exception) and log.result.conflict is None:
                raise answer
        position += added + finishing


def _copy_rest(source: Client, destination: Client, log: _Log, dry_run: bool) -> None:
    """The rest of a long log, a page a round trip, then its finishing commands."""
    page: list[Entry] = []
    for page in _pages(source, log.key, f"({log.after}", "+"):
        answers = [] if dry_run else _append(destination, log.target, page)
        _count(log, page, answers, dry_run)
        if log.result.conflict is not None:
            return
    finishing = [] if dry_run else _finishing(log, page)
    if finishing:
        pipe = destination.pipeline(transaction=False)
        for command in finishing:
            pipe.execute_command(*command)
        pipe.execute()


def _append(destination: Client, target: str, page: list[Entry]) -> list:
    pipe = destination.pipeline(transaction=False)
    for entry_id, fields in page:
        pipe.xadd(target, fields, id=entry_id)
    return pipe.execute(raise_on_error=False)


def _count(log: _Log, page: list[Entry], answers: list, dry_run: bool) -> None:
    """Count what of ``page`` was written (all of it in a dry run). The destination refuses an
    id at or below its log's newest: its log moved meanwhile (something publishes to it)."""
    for index, entry in enumerate(page):
        answer = None if dry_run else answers[index]
        if isinstance(answer, redis.ResponseError) and "smaller" in str(answer):
            log.result.conflict = Conflict(
                log.channel,
                f"the destination refused event {_text(entry[0])}: its log moved while it "
                "was copied (something publishes to it); the events before it were copied",
            )
            return
        if isinstance(answer, Exception):
            raise answer
        log.result.events += 1
        log.result.bytes += _entry_bytes(entry)
        log.after = _text(entry[0])


def _finishing(log: _Log, last_page: list[Entry]) -> list[tuple]:
    """The commands that give the destination's log the source's last generated id and
    expiry, once every entry is written (``last_page`` the last written, maybe empty).

    The id is the one read before copying: an event published on the source meanwhile has a
    greater one, so it is never skipped (the next run copies it). The expiry never shortens
    what publishes on the destination extended (``GT``)."""
    head, there = log.head, log.there
    copied_to = _text(last_page[-1][0]) if last_page else log.after
    exists = there is not None or bool(last_page)
    commands: list[tuple] = []
    newest = head.last
    caught_up = newest is None or id_key(_text(newest[0])) <= id_key(copied_to)
    if caught_up and id_key(head.last_generated) > id_key(copied_to):
        if exists:
            commands.append(("XSETID", log.target, head.last_generated))
        elif head.last_generated != START:  # an emptied log: an entry trimmed as it is added
            commands.append(("XADD", log.target, "MAXLEN", "0", head.last_generated,
                             "type", "", "data", "", "prev", START))
            exists = True
    if exists and head.ttl_ms > 0:
        remaining = max(1, head.ttl_ms - int((time.monotonic() - head.read_at) * 1000))
        keep_longer = () if there is None or there.ttl_ms < 0 else ("GT",)
        commands.append(("PEXPIRE", log.target, remaining, *keep_longer))
    return commands


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


def _batches(items: Iterable[tuple[bytes, str]], size: int) -> Iterator[list[tuple[bytes, str]]]:
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch


def _entries(client: Client, key: bytes | str, low: str, high: str) -> Iterable[Entry]:
    for page in _pages(client, key, low, high):
        yield from page


def _entry_bytes(entry: Entry) -> int:
    entry_id, fields = entry
    return len(entry_id) + sum(len(name) + len(value) for name, value in fields.items())


def _text(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value
