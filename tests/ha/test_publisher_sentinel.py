"""A Publisher on a Sentinel URL follows the primary through failovers (real redis-server and
sentinel processes, real kill -9): while there is no primary a publish fails fast with
PublishError, never hangs; once the sentinels name the new one, the same Publisher stores there,
with no restart and no new Publisher."""

from __future__ import annotations

import time

import pytest

from eventgate.shared import keys
from eventgate.shared.errors import PublishError
from eventgate.shared.primary import CHECK_SECONDS, primary_of
from eventgate.shared.publisher import Publisher
from eventgate.web.app import create_app
from tests.ha.sentinels import every_sentinel_names
from tests.servers import wait_for

#: A failed publish returns within the command timeout and a connect timeout (Config's 0.5 s
#: each), with room for a loaded machine; never the minutes of a hang.
FAIL_FAST_SECONDS = 2.0


class Attempts:
    """Publishes one event per call until one is stored; keeps how long each failure took."""

    def __init__(self, publisher: Publisher, channel: str) -> None:
        self.publisher = publisher
        self.channel = channel
        self.failures: list[float] = []
        self.sent = 0

    def __call__(self) -> str | None:
        self.sent += 1
        started = time.monotonic()
        try:
            return self.publisher.publish(self.channel, {"n": self.sent})
        except PublishError:
            self.failures.append(time.monotonic() - started)
            return None


def _in_log(server, channel: str, event_id: str) -> bool:  # noqa: ANN001 - RedisServer
    return bool(server.client().xrange(keys.log_key(channel), event_id, event_id))


def _web_failovers(web) -> float:  # noqa: ANN001 - a Flask test client
    text = web.get("/metrics").get_data(as_text=True)
    return next(float(line.split()[1]) for line in text.splitlines()
                if line.startswith("eventgate_web_failovers_total "))


@pytest.mark.parametrize("durable_replicas", [0, 1])
def test_after_kill_9_publishes_fail_fast_then_land_on_the_new_primary(
    sentinel_set, channel, durable_replicas, make_config
):
    publisher = Publisher.from_url(sentinel_set.url, durable_replicas=durable_replicas)
    web = create_app(make_config(redis_url=sentinel_set.url)).test_client()
    try:
        assert web.get("/readyz").status_code == 200 and _web_failovers(web) == 0
        assert _in_log(sentinel_set.primary(), channel, publisher.publish(channel, "before"))
        old = sentinel_set.primary()
        old.signal(9)
        attempts = Attempts(publisher, channel)
        stored = wait_for(attempts, 30, "a publish stored after the primary was killed")
        # Stored on the promoted replica, possibly before every sentinel names it.
        new = sentinel_set.wait_failover(old)
        assert _in_log(new, channel, stored)
        assert attempts.failures, "the publishes right after kill -9 must fail"
        assert max(attempts.failures) < FAIL_FAST_SECONDS, attempts.failures
        assert primary_of(publisher.client).switches == 1
        # The web app's own pool notices on its next use (here its readiness probe), once.
        wait_for(lambda: web.get("/readyz").status_code == 200, 10, "web readiness again")
        assert _web_failovers(web) == 1
    finally:
        publisher.client.close()
        sentinel_set.restore()


def test_after_a_graceful_failover_publishes_move_to_the_new_primary(sentinel_set, channel):
    publisher = Publisher.from_url(sentinel_set.url)
    try:
        old = sentinel_set.primary()
        assert _in_log(old, channel, publisher.publish(channel, "before"))
        sentinel_set.sentinel().execute_command("SENTINEL", "FAILOVER", sentinel_set.service)
        new = sentinel_set.wait_failover(old)
        wait_for(lambda: every_sentinel_names(sentinel_set, new), 10,
                 "every sentinel naming the new primary")
        named_at = time.monotonic()
        attempts = Attempts(publisher, channel)
        # The old primary keeps accepting writes until Sentinel demotes it (~10 s later): the
        # Publisher must not wait for its READONLY but move within a check period.
        wait_for(lambda: (stored := attempts()) and _in_log(new, channel, stored), 10,
                 "a publish stored on the new primary")
        assert time.monotonic() - named_at < 2 * CHECK_SECONDS + 1.0  # a missed check: loaded
        assert all(seconds < FAIL_FAST_SECONDS for seconds in attempts.failures)
        # Once demoted, the old primary refuses writes; the Publisher is elsewhere already.
        wait_for(lambda: old.client().execute_command("ROLE")[0] == b"slave", 30,
                 "the old primary demoted to a replica")
        assert _in_log(new, channel, publisher.publish(channel, "after"))
    finally:
        publisher.client.close()
        sentinel_set.restore()
