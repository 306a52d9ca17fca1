"""One failover scenario: clients on async and durable channels, two keyed publishers at a steady
rate, a fault, then the verdict (tests/ha/verdict.py) and the timeline."""

from __future__ import annotations

import time
from collections.abc import Callable

from eventgate.shared.events import id_key
from eventgate.shared.tokens import ChannelTokens
from tests.clients import EventSourceClient
from tests.ha.apps import Apps
from tests.ha.traffic import Cutter, KeyedPublisher
from tests.ha.verdict import (
    Verdict,
    first_delivery,
    judge_client,
    judge_log,
    promoted_at,
    surviving_log,
    wait_caught_up,
    worst_lag,
)
from tests.servers import RedisServer, SentinelSet, wait_for

#: Events a second, per publisher (two publishers: one async, one durable).
RATE = 40.0


class Scenario:
    """``start()`` connects the clients and starts publishing; ``strike(fault)`` runs the fault
    and notes when; ``finish()`` publishes on for a while, stops, and judges."""

    def __init__(self, apps: Apps, sentinels: SentinelSet, tokens: ChannelTokens,
                 publish_key: str, base: str) -> None:
        self.apps = apps
        self.sentinels = sentinels
        self.tokens = tokens
        self.async_channels = [f"{base}.a1", f"{base}.a2"]
        self.durable_channels = [f"{base}.d1", f"{base}.d2"]
        a1, a2 = self.async_channels
        d1, d2 = self.durable_channels
        self.follows = {
            "a1 client": (a1,), "a1 reconnecting client": (a1,), "d1 client": (d1,),
            "four-channel client": (a1, a2, d1, d2), "a2+d2 reconnecting client": (a2, d2),
        }
        self.clients: dict[str, EventSourceClient] = {}
        self.publishers = [
            KeyedPublisher(apps.web.port, publish_key, self.async_channels, RATE),
            KeyedPublisher(apps.durable_web.port, publish_key, self.durable_channels, RATE),
        ]
        self.cutter: Cutter | None = None
        self.struck_at = 0.0
        self.named_at: float | None = None  # when the sentinels first named the new primary
        self.old_primary_writes: int | None = None

    def start(self, warm_up: int = 30) -> Scenario:
        for label, channels in self.follows.items():
            token, _ = self.tokens.issue(list(channels))
            self.clients[label] = EventSourceClient(self.apps.stream.port, token, channels).start()
        wait_for(lambda: all(c.opened for c in self.clients.values()), 10,
                 "every client's stream to open")
        self.cutter = Cutter([c for label, c in self.clients.items()
                              if "reconnecting" in label]).start()
        for publisher in self.publishers:
            publisher.start()
        for publisher in self.publishers:
            publisher.wait_count(warm_up)
        return self

    def strike(self, fault: Callable[[], object]) -> None:
        self.struck_at = time.time()
        fault()

    def fail_over(self, fault: Callable[[RedisServer], object], name: str,
                  durable_loss_until: float = 0.0) -> Verdict:
        """Strike ``fault`` at the primary, wait until the sentinels name another and the old
        one is dead or demoted (until then it may still take writes: a ``SENTINEL FAILOVER``
        leaves it primary until a sentinel's next look at it, up to ten seconds), then
        ``finish`` (``durable_loss_until``: see verdict.judge_log)."""
        old = self.sentinels.primary()
        scripts_before = scripts_run(old)
        self.strike(lambda: fault(old))
        new = self.sentinels.wait_failover(old)
        self.named_at = time.time()
        wait_for(lambda: not old.program.running
                 or old.client().execute_command("ROLE")[0] == b"slave",
                 30, f"the old primary (port {old.port}) to be dead or demoted", old.log)
        # Publishes the old primary ran from the fault to its demotion (the split brain's
        # writes: lost, confirmed or not); None when it died.
        self.old_primary_writes = (scripts_run(old) - scripts_before
                                   if old.program.running else None)
        return self.finish(new, name, durable_loss_until=durable_loss_until)

    def finish(self, promoted: RedisServer | None, name: str, after: int = 60,
               durable_loss_until: float = 0.0) -> Verdict:
        """Publish ``after`` more events on each publisher, stop, and judge against the log on
        the primary. ``promoted``: the new primary (None when the fault moved no primary)."""
        for publisher in self.publishers:
            publisher.wait_count(publisher.count + after, timeout=30)
        assert self.cutter is not None
        self.cutter.stop()
        for publisher in self.publishers:
            publisher.stop()
        primary = self.sentinels.primary().client()
        channels = self.async_channels + self.durable_channels
        logs = {name: surviving_log(primary, name) for name in channels}
        verdict = Verdict()
        wait_caught_up(self.clients, logs, verdict)
        for publisher, durable in zip(self.publishers, (False, True), strict=True):
            if publisher.unconfirmed:
                verdict.complain(f"never confirmed: {publisher.unconfirmed}")
            for channel in publisher.channels:
                judge_log(verdict, channel, logs[channel], publisher, durable, self.struck_at,
                          durable_loss_until)
                for label, client in self.clients.items():
                    if channel in client.channels:
                        judge_client(verdict, label, client, channel, logs[channel], publisher,
                                     durable)
        self._timeline(verdict, promoted, logs, name)
        return verdict

    def stop(self) -> None:
        """Stop whatever still runs (after a failure too)."""
        if self.cutter is not None:
            self.cutter.stop()
        for publisher in self.publishers:
            publisher.stop()
        for client in self.clients.values():
            client.stop()

    def _timeline(self, verdict: Verdict, promoted: RedisServer | None, logs: dict,
                  name: str) -> None:
        since = promoted_at(promoted.log) if promoted is not None else self.struck_at
        firsts = sorted(
            at - self.struck_at for label, client in self.clients.items()
            if (at := first_delivery(client, list(client.channels), logs, since)) is not None)
        confirmed = [
            publisher.confirmed_at[channel][n] - self.struck_at
            for publisher in self.publishers for channel in publisher.channels
            for n, event_id in publisher.confirmed[channel].items()
            if id_key(event_id)[0] > since * 1000]
        lags = [lag for client in self.clients.values()
                if (lag := worst_lag(client, list(client.channels), logs, since)) is not None]
        figures = verdict.figures
        figures["worst_lag_s"] = round(max(lags), 3) if lags else None
        figures["old_primary_writes"] = self.old_primary_writes
        figures["named_after_s"] = (round(self.named_at - self.struck_at, 3)
                                    if self.named_at else None)
        figures["first_confirmed_s"] = round(min(confirmed), 3) if confirmed else None
        figures["promoted_after_s"] = round(since - self.struck_at, 3) if promoted else None
        figures["first_delivery_s"] = [round(t, 3) for t in firsts]
        figures["statuses"] = [dict(p.statuses) for p in self.publishers]
        figures["cuts"] = self.cutter.cuts if self.cutter else 0
        print(f"\n[{name}] fault→new primary promoted: {figures['promoted_after_s']} s; "
              f"named by the sentinels: {figures['named_after_s']} s; "
              f"fault→first publish it confirmed: {figures['first_confirmed_s']} s; "
              f"publishes the old primary ran after the fault: {self.old_primary_writes}; "
              f"fault→first event from it delivered, per client: {figures['first_delivery_s']} s;"
              f" longest an event stored on it waited for a client: {figures['worst_lag_s']} s;"
              f" publish answers (async, durable): {figures['statuses']}; confirmed lost: "
              f"{figures['confirmed_lost']}; {figures.get('lost_seen', [])}; "
              f"{figures.get('lost_unseen', [])}")


def scripts_run(server: RedisServer) -> int:
    """How many publish scripts ``server`` has run (rejected ones, e.g. READONLY, not counted)."""
    stats = server.client().info("commandstats")
    return sum(int(stats.get(f"cmdstat_{name}", {}).get("calls", 0))
               for name in ("evalsha", "eval"))
