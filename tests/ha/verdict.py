"""What the clients received, judged against the log that survived the failover and what the
publishers got confirmed; and the failover's timeline, read from the same records.

The rules (docs/ha.md): each client ends with exactly the events the surviving log holds, in
order, once; an event it received that the surviving log lacks (the old primary stored it, the
failover lost it) is followed by an ``eventgate.lost`` on its channel; a notice never comes when
nothing was lost; with durable publish no confirmed event is missing. The log never holds one
publish twice (one Idempotency-Key, one entry). A confirmed event lost before any client
received it cannot be announced (the stream tier never read it): it is counted, not failed."""

from __future__ import annotations

import contextlib
import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import redis

from eventgate.shared import keys
from eventgate.shared.events import id_key
from tests.clients import EventSourceClient
from tests.ha.traffic import KeyedPublisher
from tests.servers import wait_for

LOST = "eventgate.lost"
#: A stream that has not delivered the newest events this long after they were stored is stuck.
STUCK_SECONDS = 5.0


@dataclass(frozen=True)
class Entry:
    id: str
    n: int


def surviving_log(client: redis.Redis, channel: str) -> list[Entry]:
    """Every entry of ``channel``'s log on the primary now, oldest first."""
    return [Entry(entry_id.decode(), json.loads(fields[b"data"])["n"])
            for entry_id, fields in client.xrange(keys.log_key(channel))]


def channel_of(client: EventSourceClient, event) -> tuple[str, str]:
    """(channel, the event's own id on it) of an event a client received."""
    cursor = event.last_event_id
    if "=" in cursor:
        name, _, own = cursor.split(",")[0].partition("=")
        return name, own
    return client.channels[0], cursor


def received(client: EventSourceClient, channel: str) -> list[tuple[int, Entry | dict]]:
    """(index among the client's events, message Entry or loss notice data) on ``channel``."""
    out: list[tuple[int, Entry | dict]] = []
    for index, event in enumerate(list(client.events)):
        if event.type == LOST:
            notice = json.loads(event.data)
            if notice["channel"] == channel:
                out.append((index, notice))
        elif event.type == "message":
            name, own = channel_of(client, event)
            if name == channel:
                out.append((index, Entry(own, json.loads(event.data)["n"])))
    return out


def promoted_at(log: Path) -> float:
    """When the data node writing ``log`` last became a primary (its ``MASTER MODE enabled``
    line; Redis stamps log lines to the millisecond in local time)."""
    stamps = re.findall(r"^\d+:M (\d\d \w{3} \d{4} [\d:.]+) \* MASTER MODE enabled",
                        log.read_text(errors="replace"), re.MULTILINE)
    assert stamps, f"{log} never says MASTER MODE enabled"
    return datetime.strptime(stamps[-1], "%d %b %Y %H:%M:%S.%f").timestamp()


@dataclass
class Verdict:
    """The problems found (empty: the failover kept every promise) and the figures measured."""

    problems: list[str] = field(default_factory=list)
    figures: dict[str, object] = field(default_factory=dict)

    def complain(self, text: str) -> None:
        self.problems.append(text)


def judge_log(verdict: Verdict, channel: str, log: list[Entry], publisher: KeyedPublisher,
              durable: bool, struck_at: float = 0.0, durable_loss_until: float = 0.0) -> None:
    """No publish stored twice, in publish order; with ``durable`` every confirmed one kept —
    except, if ``durable_loss_until`` > 0, those confirmed within that many seconds after the
    fault (``struck_at``): a known window, counted in the figures (docs/ha.md)."""
    numbers = [entry.n for entry in log]
    twice = sorted({n for n in numbers if numbers.count(n) > 1})
    if twice:
        verdict.complain(f"{channel}: stored twice: n={twice[:10]}")
    if numbers != sorted(numbers):
        verdict.complain(f"{channel}: log out of publish order: {numbers[:40]}")
    kept = {entry.id for entry in log}
    lost = sorted(n for n, event_id in publisher.confirmed[channel].items()
                  if event_id not in kept)
    verdict.figures.setdefault("confirmed_lost", {})[channel] = len(lost)  # type: ignore[index]
    late = [n for n in lost
            if publisher.confirmed_at[channel][n] - struck_at > durable_loss_until]
    if durable and late:
        verdict.complain(f"{channel} (durable): confirmed events lost: n={late[:10]}")


def judge_client(verdict: Verdict, label: str, client: EventSourceClient, channel: str,
                 log: list[Entry], publisher: KeyedPublisher, durable: bool) -> None:
    """``client`` (which followed ``channel`` from before its first event) against the log."""
    where = f"{label} on {channel}"
    kept = {entry.id for entry in log}
    got = received(client, channel)
    messages = [(i, item) for i, item in got if isinstance(item, Entry)]
    notices = [(i, item) for i, item in got if isinstance(item, dict)]
    in_log = [item.id for _, item in messages if item.id in kept]
    expected = [entry.id for entry in log]
    if in_log != expected:
        missing = [entry.n for entry in log if entry.id not in set(in_log)]
        verdict.complain(
            f"{where}: {len(in_log)} of {len(expected)} logged events, "
            f"{len(in_log) - len(set(in_log))} twice, missing n={missing[:10]}, "
            f"in order={in_log == sorted(in_log, key=id_key)}")
    extras = [(i, item) for i, item in messages if item.id not in kept]
    for index, item in extras:
        if item.n not in publisher.attempted[channel]:
            verdict.complain(f"{where}: received n={item.n} that was never published")
        if not any(at > index for at, _ in notices):
            verdict.complain(f"{where}: received n={item.n} (id {item.id}), which the failover "
                             "lost, with no eventgate.lost after it")
    lost = [n for n, event_id in publisher.confirmed[channel].items() if event_id not in kept]
    if lost and not notices:
        # The client never saw them (it had no lost event before its notice-free resume, or its
        # worker had left the old primary before they were written): its position is in the
        # new log, and nothing tells the stream tier of events it never read. Counted, not a
        # failure (docs/ha.md: "A client whose position is still in the new log …").
        verdict.figures.setdefault("lost_unseen", []).append(  # type: ignore[union-attr]
            f"{where}: {len(lost)} confirmed events lost, none received")
    missing_attempts = publisher.attempted[channel] - {entry.n for entry in log}
    if notices and durable and not extras:
        verdict.complain(f"{where} (durable): eventgate.lost {notices[0][1]} with nothing lost")
    elif notices and not (extras or lost or missing_attempts):
        verdict.complain(f"{where}: eventgate.lost {notices[0][1]} with nothing lost")
    if extras or notices:
        verdict.figures.setdefault("lost_seen", []).append(  # type: ignore[union-attr]
            f"{where}: {len(extras)} lost events received, {len(notices)} eventgate.lost")
    if client.failed_status is not None:
        verdict.complain(f"{where}: the stream answered {client.failed_status}")


def delivered_at(client: EventSourceClient, channel: str, event_id: str) -> float | None:
    """When ``client`` received the event ``event_id`` of ``channel`` (None: not yet)."""
    for at, event in zip(list(client.arrivals), list(client.events), strict=False):
        if event.type == "message" and channel_of(client, event) == (channel, event_id):
            return at
    return None


def first_delivery(client: EventSourceClient, channels: list[str], logs: dict[str, list[Entry]],
                   after: float) -> float | None:
    """When ``client`` first received an event of its ``channels`` stored after ``after`` (wall
    clock; a stream id's milliseconds are the storing server's clock, the same one here)."""
    after_ms = after * 1000
    times = []
    for channel in channels:
        for entry in logs[channel]:
            if id_key(entry.id)[0] > after_ms:
                at = delivered_at(client, channel, entry.id)
                if at is not None:
                    times.append(at)
                break  # later events of the channel arrive after its first one
    return min(times, default=None)


def wait_caught_up(clients: dict[str, EventSourceClient], logs: dict[str, list[Entry]],
                   verdict: Verdict) -> None:
    """Every client receives the newest logged event of each of its channels within
    STUCK_SECONDS of the publishers stopping; a stream still waiting then is stuck."""
    newest = [(label, client, channel, logs[channel][-1].id)
              for label, client in clients.items() for channel in client.channels
              if logs[channel]]

    def waiting() -> list:
        return [item for item in newest if delivered_at(item[1], item[2], item[3]) is None]

    with contextlib.suppress(AssertionError):  # the complaints below say what is wrong
        wait_for(lambda: not waiting(), STUCK_SECONDS, "every stream to catch up")
    for label, client, channel, event_id in waiting():
        verdict.complain(f"{label} on {channel}: stuck, the newest event {event_id} never "
                         f"arrived ({client.connections} connections)")


def worst_lag(client: EventSourceClient, channels: list[str], logs: dict[str, list[Entry]],
              after: float) -> float | None:
    """The longest ``client`` waited for an event of its ``channels`` stored after ``after``:
    from its storing (the id's milliseconds) to its arrival."""
    lags = []
    for channel in channels:
        for entry in logs[channel]:
            stored = id_key(entry.id)[0] / 1000
            if stored > after and (at := delivered_at(client, channel, entry.id)) is not None:
                lags.append(at - stored)
    return max(lags, default=None)
