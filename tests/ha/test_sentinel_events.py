"""A Primary hears a switch from the sentinels' own pub/sub (``+failover-state-wait-promotion``,
``+promoted-slave``, ``+switch-master``) within milliseconds, not at its next asking: with the
asking made hourly, a Primary still names the promoted replica right after ``SENTINEL
FAILOVER``, its pools' next command runs there, and the switch counts once however many
sentinels and events announce it."""

from __future__ import annotations

import time

from eventgate.shared.primary import pushed_primary
from eventgate.shared.redisconn import connect, primary_for
from tests.ha.sentinels import every_sentinel_names
from tests.servers import LOOPBACK, wait_for

#: From SENTINEL FAILOVER to the promoted replica named: Sentinel sends it REPLICAOF NO ONE
#: ~0.2 s after the command here (``+failover-state-wait-promotion``); with room for a loaded
#: machine. The asking, made hourly here, cannot do it at all.
PUSHED_WITHIN_SECONDS = 1.0


def test_the_events_that_name_a_primary_are_parsed():
    assert pushed_primary("+switch-master", "eventgate 10.0.0.1 6379 10.0.0.2 6380",
                          "eventgate") == ("10.0.0.2", 6380)
    assert pushed_primary(
        "+promoted-slave", "slave 10.0.0.2:6380 10.0.0.2 6380 @ eventgate 10.0.0.1 6379",
        "eventgate") == ("10.0.0.2", 6380)
    assert pushed_primary("+switch-master", "other 10.0.0.1 6379 10.0.0.2 6380",
                          "eventgate") is None
    assert pushed_primary(
        "+failover-state-wait-promotion",
        "slave 10.0.0.2:6380 10.0.0.2 6380 @ eventgate 10.0.0.1 6379",
        "eventgate") == ("10.0.0.2", 6380)
    assert pushed_primary("+promoted-slave", "slave 10.0.0.2:6380 10.0.0.2 x @ eventgate",
                          "eventgate") is None
    assert pushed_primary("+odown", "master eventgate 10.0.0.1 6379 #quorum 2/2",
                          "eventgate") is None


def test_a_graceful_failover_is_pushed_to_the_primary_at_once(sentinel_set, make_config):
    config = make_config(redis_url=sentinel_set.url)
    primary = primary_for(config)
    assert primary is not None
    primary.check_seconds = 3600.0  # the asking alone would see no switch during this test
    client = connect(config, primary=primary)

    def serving_port() -> int:
        return int(client.config_get("port")["port"])

    try:
        old = sentinel_set.primary()
        assert primary.current() == (LOOPBACK, old.port) and serving_port() == old.port
        wait_for(lambda: len(primary.listening) == 3, 10, "listening to every sentinel")
        started = time.monotonic()
        sentinel_set.sentinel().execute_command("SENTINEL", "FAILOVER", sentinel_set.service)
        named = wait_for(lambda: primary.named() != (LOOPBACK, old.port) and primary.named(),
                         10, "the Primary naming another primary")
        pushed_after = time.monotonic() - started
        print(f"\n[sentinel events] SENTINEL FAILOVER → Primary names {named}: "
              f"{pushed_after:.3f} s")
        assert pushed_after < PUSHED_WITHIN_SECONDS
        new = next(node for node in sentinel_set.nodes if (LOOPBACK, node.port) == named)
        # Named as REPLICAOF NO ONE reaches it: the pool's next command runs there, at once.
        wait_for(lambda: serving_port() == new.port, 1.0, "a command on the new primary")
        assert new.client().execute_command("ROLE")[0] == b"master"
        assert primary.switches == 1
        wait_for(lambda: every_sentinel_names(sentinel_set, new), 15, "every sentinel naming it")
        # Every sentinel's +switch-master, and an asking, name the same switch: still one.
        assert primary.current() == named and primary.switches == 1
    finally:
        client.close()
        sentinel_set.restore()
