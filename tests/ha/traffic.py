"""Traffic through a failover: a publisher of numbered events over ``POST /api/events``, each with
its own Idempotency-Key and retried with that key until confirmed, and clients that cut their own
streams now and then (they resume with their cursor, as a browser does after a network blip)."""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections import Counter

from tests.clients import EventSourceClient
from tests.servers import LOOPBACK, wait_for

#: Seconds between two tries of one publish (an outbox's retry interval).
RETRY_SECONDS = 0.05
#: A publish not confirmed after this long is given up (and reported).
GIVE_UP_SECONDS = 20.0


class KeyedPublisher:
    """Publishes ``{"n": i}`` for i = 0, 1, … on ``channels`` (round robin) at ``rate``/s through
    the web pool on ``port``; a publish that is not answered 201 is tried again with the same
    Idempotency-Key until it is. ``confirmed[channel]`` maps each confirmed number to its id and
    ``confirmed_at[channel][n]`` to when the 201 came (wall clock); ``statuses`` counts every
    answer (0: no answer)."""

    def __init__(self, port: int, publish_key: str, channels: list[str], rate: float) -> None:
        self.port = port
        self.publish_key = publish_key
        self.channels = channels
        self.rate = rate
        self.prefix = f"{channels[0]}.{time.monotonic_ns()}"
        self.confirmed: dict[str, dict[int, str]] = {name: {} for name in channels}
        self.confirmed_at: dict[str, dict[int, float]] = {name: {} for name in channels}
        self.attempted: dict[str, set[int]] = {name: set() for name in channels}
        self.statuses: Counter[int] = Counter()
        self.unconfirmed: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> KeyedPublisher:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Finish the publish under way (retrying it until confirmed, at most GIVE_UP_SECONDS),
        then stop."""
        self._stop.set()
        if self._thread.ident is not None:
            self._thread.join(GIVE_UP_SECONDS + 5)
        assert not self._thread.is_alive(), "the publisher did not stop"

    @property
    def count(self) -> int:
        return sum(len(numbers) for numbers in self.confirmed.values())

    def wait_count(self, count: int, timeout: float = 30) -> None:
        wait_for(lambda: self.count >= count, timeout, f"{count} confirmed publishes")

    def _run(self) -> None:
        start = time.monotonic()
        number = 0
        while not self._stop.is_set():
            channel = self.channels[number % len(self.channels)]
            if not self._publish_until_confirmed(channel, number):
                self.unconfirmed.append(number)
                return
            number += 1
            delay = start + number / self.rate - time.monotonic()
            if delay > 0:
                self._stop.wait(delay)  # the pace (``rate`` events a second)

    def _publish_until_confirmed(self, channel: str, number: int) -> bool:
        body = json.dumps({"channel": channel, "data": {"n": number}}).encode()
        headers = {"Authorization": f"Bearer {self.publish_key}",
                   "Content-Type": "application/json",
                   "Idempotency-Key": f"{self.prefix}.{number}"}
        deadline = time.monotonic() + GIVE_UP_SECONDS
        self.attempted[channel].add(number)
        while time.monotonic() < deadline:
            status, answer = self._post(body, headers)
            self.statuses[status] += 1
            if status == 201:
                self.confirmed[channel][number] = answer["id"]
                self.confirmed_at[channel][number] = time.time()
                return True
            time.sleep(RETRY_SECONDS)  # on purpose: the retry interval
        return False

    def _post(self, body: bytes, headers: dict[str, str]) -> tuple[int, dict]:
        connection = http.client.HTTPConnection(LOOPBACK, self.port, timeout=3)
        try:
            connection.request("POST", "/api/events", body, headers)
            response = connection.getresponse()
            return response.status, json.loads(response.read() or b"{}")
        except (OSError, http.client.HTTPException, ValueError):
            return 0, {}
        finally:
            connection.close()


class Cutter:
    """Cuts the current connection of each of ``clients`` every ``every`` seconds: they
    reconnect with their cursor (Last-Event-ID) while the failover goes on."""

    def __init__(self, clients: list[EventSourceClient], every: float = 0.7) -> None:
        self.clients = clients
        self.every = every
        self.cuts = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Cutter:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            for client in self.clients:
                current = client.current
                if current is not None and not current.ended.is_set():
                    current.close()
                    self.cuts += 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
