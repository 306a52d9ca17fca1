"""Copying channel logs between two Redis with every event's id and fields kept, checking first
what the destination holds of them: the rule that makes ``eventgate migrate`` safe to run again.

A Redis Stream only appends — an id at or below its last generated id can never be added — so a
copy resumes after the destination's last id. Before that, the destination's log is checked
against the source's. With G its last generated id, F its oldest entry and B the point its chain
says precedes all it holds (F's ``prev``, or G when it holds no entry):

- source entries at or below B are history the destination has moved past (copied, then trimmed
  there); B itself must be in the source when it lies within the source's range;
- source entries in (B, G] must be exactly the destination's entries there — leaving out the
  destination's entries older than the source's oldest (history the source has trimmed) and
  newer than its newest (publishes made on the destination since the switch);
- source entries after G are copied; then the source's last generated id (``XSETID``: a log
  whose newest events were trimmed still chains the next publish to the right ``prev``) and
  its expiry (``PTTL`` → ``PEXPIRE``).

Anything else is a conflict — typically an event published on the source after the destination
took new events of its own, which can never be inserted below them: that log is left as it is.

Logs go in batches: the heads of a batch, the first pages of its logs and the writes of those
each take one pipeline (under Cluster, redis-py's splits it by node), so a short log costs a
few round trips per batch rather than per log.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import zip_longest
from typing import NamedTuple

import redis

from eventgate.shared import keys
from eventgate.shared.events import READ_BATCH, START, entry_fields, id_key
from eventgate.shared.redisconn import Client

#: Entries of one long log read and written per round trip.
PAGE = READ_BATCH
#: Entries of each log in a batch's first read. A longer log goes on alone, PAGE at a time.
#: A batch of 64 logs holds at most 64 × FIRST_PAGE events in memory (128 MiB of the biggest
#: events the default EVENTGATE_MAX_EVENT_BYTES allows; far less of ordinary ones).
FIRST_PAGE = 32

#: A stream entry as redis-py returns it: id and fields, bytes.
Entry = tuple[bytes, dict]


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
    (module docstring); one LogCopy per log. Short logs cost a few round trips for the whole
    batch; a longer one goes on alone, PAGE entries a round trip. The logs of a batch must be
    of distinct channels: a second log of a channel must be checked against what the first
    wrote."""
    targets = [keys.log_key(channel) for _, channel in batch]
    results = [LogCopy() for _ in batch]
    heads = read_heads(source, [key for key, _ in batch])
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
    before = entry_fields(*there.first)[1] if there.first is not None else there.last_generated
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
    return (f"the destination holds an event the source does not ({_text(other[0])}), among "
            "the source's: both took events of their own since they last agreed")


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
        _finished(answers[position + added : position + added + finishing])
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
        _finished(pipe.execute(raise_on_error=False))


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


def _finished(answers: list) -> None:
    """Raise what the finishing commands failed with, except an XSETID refused because the
    destination's log went past that id meanwhile (a publisher there): its own events chain."""
    for answer in answers:
        if isinstance(answer, Exception) and not (
            isinstance(answer, redis.ResponseError) and "smaller" in str(answer)
        ):
            raise answer


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
