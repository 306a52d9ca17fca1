"""A paced publisher of numbered events that keeps retrying while Redis is down (an outbox)."""

from __future__ import annotations

import json
import threading
import time

import redis

from eventgate.shared import keys
from eventgate.shared.errors import PublishError
from eventgate.shared.publisher import Publisher
from tests.servers import wait_for


class PacedPublisher:
    """Publishes ``{"n": i}`` for i = 0, 1, … on ``channels`` (round robin) at ``rate``/s until
    ``total`` events were accepted. ``accepted[channel]`` lists the numbers Redis confirmed."""

    def __init__(self, publisher: Publisher, channels: list[str], total: int, rate: float) -> None:
        self.publisher = publisher
        self.channels = channels
        self.total = total
        self.rate = rate
        self.accepted: dict[str, list[int]] = {name: [] for name in channels}
        self.failures = 0
        self.done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> PacedPublisher:
        self._thread.start()
        return self

    def _run(self) -> None:
        start = time.monotonic()
        for number in range(self.total):
            channel = self.channels[number % len(self.channels)]
            while True:
                try:
                    self.publisher.publish(channel, {"n": number})
                    break
                except PublishError:
                    # Ambiguous: Redis may have stored it and lost only the reply. A careful
                    # publisher checks before trying again (we are the channel's only writer).
                    self.failures += 1
                    time.sleep(0.05)  # on purpose: an outbox's retry interval while Redis is down
                    if self._stored(channel, number):
                        break
            self.accepted[channel].append(number)
            delay = start + (number + 1) / self.rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)  # on purpose: the pace (``rate`` events a second)
        self.done.set()

    def _stored(self, channel: str, number: int) -> bool:
        try:
            newest = self.publisher.client.xrevrange(keys.log_key(channel), count=1)
        except redis.RedisError:
            return False
        return bool(newest) and json.loads(newest[0][1][b"data"]) == {"n": number}

    @property
    def count(self) -> int:
        """How many events Redis confirmed so far."""
        return sum(len(numbers) for numbers in self.accepted.values())

    def wait_count(self, count: int, timeout: float = 30) -> None:
        """Wait until ``count`` events were confirmed (a fault strikes mid-stream after it)."""
        wait_for(lambda: self.count >= count, timeout, f"{count} published events")

    def wait(self, timeout: float = 60) -> None:
        if not self.done.wait(timeout):
            raise AssertionError(f"publisher did not finish within {timeout}s")
