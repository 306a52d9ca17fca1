"""The failover verdict (tests/ha/verdict.py) catches what it must: each rule broken on purpose,
on hand-made client records, without any server."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from tests.ha.traffic import KeyedPublisher
from tests.ha.verdict import Entry, Verdict, judge_client, judge_log
from tests.wsse import ParsedEvent

LOG = [Entry("1-0", 0), Entry("2-0", 1), Entry("5-0", 3)]  # n=2 (id 3-0) was lost


def published(confirmed: dict[int, str]) -> KeyedPublisher:
    publisher = KeyedPublisher(0, "key", ["c"], 1.0)
    publisher.confirmed["c"] = confirmed
    publisher.confirmed_at["c"] = {n: 10.0 + n for n in confirmed}  # the fault strikes at 0
    publisher.attempted["c"] = {0, 1, 2, 3}
    return publisher


def client(*events: ParsedEvent) -> SimpleNamespace:
    return SimpleNamespace(events=list(events), channels=("c",), failed_status=None)


def message(entry_id: str, n: int) -> ParsedEvent:
    return ParsedEvent("message", json.dumps({"n": n}), entry_id)


LOSS = ParsedEvent("eventgate.lost", json.dumps(
    {"channel": "c", "last_seen": "3-0", "resumes_after": "3-0"}), "3-0")
ALL = {0: "1-0", 1: "2-0", 2: "3-0", 3: "5-0"}


def problems(record: SimpleNamespace, confirmed: dict[int, str], durable: bool = False):
    verdict = Verdict()
    judge_client(verdict, "x", record, "c", LOG, published(confirmed), durable)
    return verdict.problems


def test_a_client_told_of_the_loss_passes():
    record = client(message("1-0", 0), message("2-0", 1), message("3-0", 2), LOSS,
                    message("5-0", 3))
    assert problems(record, ALL) == []


@pytest.mark.parametrize("record", [
    client(message("1-0", 0), message("2-0", 1), message("3-0", 2), message("5-0", 3)),  # silent
    client(message("1-0", 0), message("2-0", 1), LOSS),                      # stuck after it
    client(message("1-0", 0), message("2-0", 1), message("2-0", 1), LOSS,
           message("5-0", 3)),                                                # twice
    client(message("2-0", 1), message("1-0", 0), LOSS, message("5-0", 3)),   # out of order
    client(message("1-0", 0), message("2-0", 1), LOSS, message("5-0", 3),
           message("3-0", 2)),                                                # lost, after it
])
def test_a_broken_rule_is_a_problem(record):
    assert problems(record, ALL)


def test_durable_loss_notice_is_a_problem():
    record = client(message("1-0", 0), message("2-0", 1), LOSS, message("5-0", 3))
    assert problems(record, {0: "1-0", 1: "2-0", 3: "5-0"}, durable=True)


def test_log_holding_one_publish_twice_or_losing_a_durable_one():
    verdict = Verdict()
    judge_log(verdict, "c", [*LOG, Entry("6-0", 3)], published(ALL), durable=True)
    assert any("stored twice" in p for p in verdict.problems)
    assert any("confirmed events lost" in p for p in verdict.problems)


def test_a_durable_loss_is_tolerated_only_inside_the_known_window():
    inside, outside = Verdict(), Verdict()
    judge_log(inside, "c", LOG, published(ALL), durable=True, durable_loss_until=12.5)
    judge_log(outside, "c", LOG, published(ALL), durable=True, durable_loss_until=11.5)
    assert inside.problems == []
    assert outside.problems  # n=2 was confirmed 12 s after the fault


def test_a_confirmed_loss_no_client_received_is_counted_not_failed():
    verdict = Verdict()
    record = client(message("1-0", 0), message("2-0", 1), message("5-0", 3))
    judge_client(verdict, "x", record, "c", LOG, published(ALL), False)
    assert verdict.problems == []
    assert verdict.figures["lost_unseen"]
