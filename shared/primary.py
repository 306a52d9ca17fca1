"""Primary: which Redis is the primary now, as the sentinels say — one per process, shared by
its connection pools, the stream broker's check, the readiness probes and the metrics.

redis-py's sentinel pools ask ``discover_master`` before every new connection and drop idle
connections when the answer changes; a connection whose primary was demoted answers writes with
``READONLY``, which redis-py turns into a ConnectionError and a reconnect. What it does not do is
notice a switch on a connection that keeps working. After ``SENTINEL FAILOVER`` (or a primary
cut off without dying) the old primary keeps answering, as a primary, until Sentinel demotes it
on its next look (up to ~10 s after the switch): writes it accepts meanwhile are lost, and a
subscriber there hears nothing published on the new one. So every process asks every
CHECK_SECONDS: command connections before a command (``FollowingConnection``), the stream
broker in a greenlet of its own; either moves when the answer is not where it is connected.

What the sentinels are asked is not redis-py's ``SENTINEL MASTERS`` alone: the sentinel leading
a failover shows the old primary there until the failover has ended (seconds after a graceful
one), while ``GET-MASTER-ADDR-BY-NAME`` names the promoted replica from the start; see
``Primary._ask``. Durable publish (``EVENTGATE_DURABLE_REPLICAS``) does not close the window:
the replica not promoted keeps acknowledging the old primary's writes until the sentinels move
it, about a second later (tests/ha/test_failover.py, docs/ha.md).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable

import redis
from redis.connection import SSLConnection
from redis.sentinel import (
    MasterNotFoundError,
    Sentinel,
    SentinelConnectionPool,
    SentinelManagedConnection,
)

from eventgate.shared.redisurl import Address

#: How often the stream broker asks the sentinels whether its pub/sub connection is still on
#: the primary (a few seconds: Centrifugo's lesson, centrifugo#1189).
CHECK_SECONDS = 2.0


class Primary(Sentinel):
    """redis-py's Sentinel client for one service, which remembers the primary it named last
    and counts the switches it saw (``switches``; ``on_switch`` is called once per switch, e.g.
    a Prometheus counter's ``inc``). Thread- and greenlet-safe."""

    def __init__(
        self,
        sentinels: list[Address],
        service: str,
        sentinel_kwargs: dict,
        **connection_kwargs: object,
    ) -> None:
        super().__init__(sentinels, sentinel_kwargs=sentinel_kwargs, **connection_kwargs)
        self.service = service
        #: The primary named last (None before the first answer).
        self.address: Address | None = None
        self.switches = 0
        self.on_switch: Callable[[], object] | None = None
        self._lock = threading.Lock()
        self._asking = threading.Lock()
        self._next_check = 0.0

    def discover_master(self, service_name: str) -> Address:
        """The primary of ``service_name`` (redis-py's answer: a sentinel that sees it up).
        Raises MasterNotFoundError (a redis ConnectionError) when no sentinel names one."""
        address = self._ask(service_name)
        if service_name == self.service:
            self._note(tuple(address))  # type: ignore[arg-type]
        return address

    def _ask(self, service_name: str) -> Address:
        """Every sentinel's view; the primary of the newest configuration (``config-epoch``, as
        the sentinels themselves settle it) among those that see it up.

        Not redis-py's ``discover_master``, which takes the first sentinel's ``SENTINEL
        MASTERS``: the sentinel leading a failover keeps showing the old primary there until
        the failover ends, once every other replica is reconfigured — seconds after a
        ``SENTINEL FAILOVER``, whose other replica needs a full resync — while the old primary
        still takes writes that the failover then loses. ``GET-MASTER-ADDR-BY-NAME``, which
        Sentinel's client guidelines prescribe, names the promoted replica from the start of
        the failover; it is asked of the sentinel that leads one."""
        best: tuple[int, Address] | None = None
        errors = []
        for sentinel in self.sentinels:
            try:
                state = sentinel.sentinel_master(service_name)
                if "failover_in_progress" in state["flags"].split(","):
                    host, port = sentinel.sentinel_get_master_addr_by_name(service_name)
                    return (host.decode() if isinstance(host, bytes) else host), int(port)
            except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError) as error:
                errors.append(type(error).__name__)
                continue
            if self.check_master_state(state, service_name):
                epoch = int(state.get("config-epoch", 0))
                if best is None or epoch > best[0]:
                    best = (epoch, (state["ip"], int(state["port"])))
        if best is None:
            raise MasterNotFoundError(f"No master found for {service_name!r} {errors}")
        return best[1]

    def current(self) -> Address:
        """Ask the sentinels now; raises like ``discover_master``."""
        return self.discover_master(self.service)

    def named(self) -> Address | None:
        """The primary the sentinels named at most CHECK_SECONDS ago; None before any answer.
        Asks them when the last answer is older — one caller at a time, the others take the
        last answer, and sentinels that do not answer leave it as it was — so a caller pays a
        sentinel round trip at most every CHECK_SECONDS per process, and a clock read else."""
        now = time.monotonic()
        if now < self._next_check or not self._asking.acquire(blocking=False):
            return self.address
        try:
            self._next_check = now + CHECK_SECONDS
            with contextlib.suppress(redis.RedisError):
                self.current()
            return self.address
        finally:
            self._asking.release()

    def _note(self, address: Address) -> None:
        self._next_check = time.monotonic() + CHECK_SECONDS
        with self._lock:
            switched = self.address is not None and address != self.address
            self.address = address
            if switched:
                self.switches += 1
        if switched and self.on_switch is not None:
            self.on_switch()


class FollowingConnection(SentinelManagedConnection):
    """A connection of a command pool that stays on the primary: before a command it moves when
    the sentinels named another primary (asked every CHECK_SECONDS per process, see
    ``Primary.named``), and it asks them again whenever it reconnects.

    redis-py 8.1 asks only when a pool hands a connection out (``connect``): a connection used
    without checkout — a client of one connection (shared/redisconn.py ThreadClients) — would
    reconnect in ``send_packed_command`` to the address it had, a dead primary, for ever; and a
    connection to a primary demoted without noticing (a graceful failover) writes on until it
    meets READONLY, which takes the old primary ~10 s after the switch (Sentinel reconfigures it
    on its next INFO): events it accepts then are lost. tests/ha/test_publisher_sentinel.py
    fails without this class. A move between WATCH and EXEC would drop the WATCH: eventgate
    sends none."""

    def send_packed_command(self, command: object, check_health: bool = True) -> None:
        proxy = self.connection_pool
        if self._sock is not None and proxy.is_master:
            named = proxy.sentinel_manager.named()
            if named is not None and named != (self.host, self.port):
                self.disconnect()
        if self._sock is None:
            self.connect()  # SentinelManagedConnection's: to the primary the sentinels name
        super().send_packed_command(command, check_health)


class FollowingSSLConnection(FollowingConnection, SSLConnection):
    pass


class BlockingSentinelPool(SentinelConnectionPool, redis.BlockingConnectionPool):
    """redis-py's sentinel pool, of FollowingConnections (``ssl=True``: over TLS), with
    BlockingConnectionPool's bound: at most ``max_connections``, and a caller waits up to
    ``timeout`` for a free one rather than failing at once."""

    def __init__(self, service_name: str, sentinel_manager: Sentinel, **kwargs: object) -> None:
        tls = bool(kwargs.pop("ssl", False))
        kwargs["connection_class"] = FollowingSSLConnection if tls else FollowingConnection
        super().__init__(service_name, sentinel_manager, **kwargs)


def primary_of(client: redis.Redis) -> Primary | None:
    """The Primary that ``client``'s pool follows; None for a client of one fixed Redis."""
    pool = client.connection_pool
    if isinstance(pool, SentinelConnectionPool) and isinstance(pool.sentinel_manager, Primary):
        return pool.sentinel_manager
    return None


def not_ready(client: redis.Redis) -> str | None:
    """Why ``client`` cannot write right now (a sentence), or None when it can. For the
    readiness probes: ``ROLE`` on a pooled connection, so that a primary demoted to a replica
    reads as not ready (a managed Redis whose endpoint still leads to the old node); under
    Sentinel first one question to a sentinel (through the pool, which drops idle connections
    left on a former primary)."""
    pool = client.connection_pool
    sentinel = isinstance(pool, SentinelConnectionPool)
    try:
        if sentinel:
            pool.get_master_address()
        role = client.execute_command("ROLE")
    except MasterNotFoundError:
        return f"no sentinel names a primary for {pool.service_name!r}."
    except redis.RedisError as error:
        return f"Redis is not answering ({type(error).__name__})."
    if role[0] not in (b"master", "master"):
        if sentinel:
            return "the Redis the sentinels name as primary answers as a replica."
        return "Redis answers as a replica: it refuses publishes (READONLY)."
    return None
