"""Traffic over many channels: a publisher of rounds — one batch of ``{"n": round}`` on every
channel per request, through ``POST /api/events`` with an Idempotency-Key per round, retried
with it until confirmed — and the clients that follow those channels, each a few channels on
different shards, or one."""

from __future__ import annotations

import json
import time

from eventgate.shared.tokens import ChannelTokens
from tests.clients import EventSourceClient
from tests.ha.traffic import GIVE_UP_SECONDS, RETRY_SECONDS, KeyedPublisher
from tests.ha.verdict import Verdict, judge_client, judge_log, surviving_log, wait_caught_up
from tests.rediscluster import RedisClusterSet
from tests.servers import wait_for


class RoundPublisher(KeyedPublisher):
    """KeyedPublisher's records (``confirmed[channel][n]``, ``attempted``…) for rounds: round n
    publishes n on every channel in one batch, which the web tier splits by slot."""

    def _run(self) -> None:
        start = time.monotonic()
        number = 0
        while not self._stop.is_set():
            if not self._publish_round(number):
                self.unconfirmed.append(number)
                return
            number += 1
            delay = start + number / self.rate - time.monotonic()
            if delay > 0:
                self._stop.wait(delay)

    @property
    def rounds(self) -> int:
        return min(len(numbers) for numbers in self.confirmed.values())

    def wait_rounds(self, count: int, timeout: float = 30) -> None:
        wait_for(lambda: self.rounds >= count, timeout, f"{count} confirmed rounds")

    def _publish_round(self, number: int) -> bool:
        body = json.dumps([{"channel": channel, "data": {"n": number}}
                           for channel in self.channels]).encode()
        headers = {"Authorization": f"Bearer {self.publish_key}",
                   "Content-Type": "application/json",
                   "Idempotency-Key": f"{self.prefix}.{number}"}
        deadline = time.monotonic() + GIVE_UP_SECONDS
        for channel in self.channels:
            self.attempted[channel].add(number)
        while time.monotonic() < deadline:
            status, answer = self._post(body, headers)
            self.statuses[status] += 1
            if status == 201:
                now = time.time()
                for channel, event_id in zip(self.channels, answer["ids"], strict=True):
                    self.confirmed[channel][number] = event_id
                    self.confirmed_at[channel][number] = now
                return True
            time.sleep(RETRY_SECONDS)  # on purpose: the retry interval
        return False


def follow(port: int, tokens: ChannelTokens, channels: list[str], per_client: int = 10,
           singles: int = 4, tls: bool = False) -> dict[str, EventSourceClient]:
    """Clients on ``port`` (over TLS: the production edge) covering every channel: groups of
    ``per_client`` channels taken across the list (so each spans shards), and ``singles``
    clients of one channel each."""
    groups = [channels[i::len(channels) // per_client] for i in range(len(channels) // per_client)]
    follows = {f"client of {len(g)} ({g[0]}…)": tuple(g) for g in groups}
    follows.update({f"client of {name}": (name,) for name in channels[:singles]})
    clients = {}
    for label, names in follows.items():
        token, _ = tokens.issue(list(names))
        clients[label] = EventSourceClient(port, token, names, tls=tls).start()
    # Open with a position: a stream that opened without one (its node could not read Redis
    # and asked to be retried) starts where the log ends when it comes back, as a browser's.
    wait_for(lambda: all(c.opened and c.last_event_id for c in clients.values()), 15,
             "every stream to open at a position")
    return clients


def judge(cluster: RedisClusterSet, clients: dict[str, EventSourceClient],
          publisher: RoundPublisher) -> Verdict:
    """Every client against the logs the cluster kept (tests/ha/verdict.py's rules), once each
    has caught up; the publisher stopped first."""
    client = cluster.cluster_client(decode_responses=False)  # surviving_log reads bytes
    try:
        logs = {name: surviving_log(client, name) for name in publisher.channels}
    finally:
        client.close()
    verdict = Verdict()
    wait_caught_up(clients, logs, verdict)
    for name in publisher.channels:
        judge_log(verdict, name, logs[name], publisher, durable=False)
        for label, follower in clients.items():
            if name in follower.channels:
                judge_client(verdict, label, follower, name, logs[name], publisher, False)
    return verdict
