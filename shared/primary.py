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
``Primary._ask``.

Asking every CHECK_SECONDS leaves up to that long in which a process writes to a primary
already replaced — and durable publish (``EVENTGATE_DURABLE_REPLICAS``) does not close that
window: the replica not promoted keeps acknowledging the old primary's writes until the
sentinels move it, about a second later (tests/ha/test_failover.py, docs/ha.md). So each
process also listens to the sentinels' own pub/sub (SWITCH_EVENTS: from the moment the leader
sends the chosen replica ``REPLICAOF NO ONE`` to the end of the failover) and takes the new
primary within milliseconds; the asking goes on as the fallback for a listener that is cut off.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import threading
import time
import weakref
from collections.abc import Callable

import redis
from redis.connection import SSLConnection
from redis.sentinel import (
    MasterNotFoundError,
    Sentinel,
    SentinelConnectionPool,
    SentinelManagedConnection,
)

from eventgate.shared.clusterstate import cluster_not_ready
from eventgate.shared.redisurl import Address

#: How often the stream broker asks the sentinels whether its pub/sub connection is still on
#: the primary (a few seconds: Centrifugo's lesson, centrifugo#1189).
CHECK_SECONDS = 2.0

#: The sentinels' events that name a new primary (sentinel.c's ``sentinelEvent`` formats).
#: ``+failover-state-wait-promotion``: the leader has just sent the chosen replica ``REPLICAOF
#: NO ONE`` (it runs it within milliseconds); ``+promoted-slave``: the leader saw it answer as
#: the primary, at its next INFO of it — up to a second later, in which the old primary still
#: takes writes that the failover loses; ``+switch-master``: a sentinel took the new
#: configuration (the end of a failover, on every sentinel).
PROMOTION_EVENTS = ("+failover-state-wait-promotion", "+promoted-slave")
SWITCH_EVENTS = ("+switch-master", *PROMOTION_EVENTS)

#: The longest wait between two tries of a sentinel's pub/sub that does not answer.
LISTEN_BACKOFF_SECONDS = 5.0

log = logging.getLogger(__name__)


def pushed_primary(event: str, payload: str, service: str) -> Address | None:
    """The primary that a sentinel's ``event`` names for ``service``, None when it names none.
    ``+switch-master``: ``<service> <old-ip> <old-port> <new-ip> <new-port>``;
    ``+promoted-slave`` (``+failover-state-wait-promotion`` alike):
    ``slave <ip>:<port> <ip> <port> @ <service> <old-ip> <old-port>``."""
    parts = payload.split()
    try:
        if event == "+switch-master" and len(parts) == 5 and parts[0] == service:
            return parts[3], int(parts[4])
        if (event in PROMOTION_EVENTS and len(parts) == 8 and parts[0] == "slave"
                and parts[4] == "@" and parts[5] == service):
            return parts[2], int(parts[3])
    except ValueError:
        return None
    return None


class Primary(Sentinel):
    """redis-py's Sentinel client for one service, which remembers the primary it named last
    and counts the switches it saw (``switches``; ``on_switch`` is called once per switch, e.g.
    a Prometheus counter's ``inc``). Thread- and greenlet-safe.

    On first use in a process (after a fork: never in a gunicorn master that does not use it)
    it starts one daemon listener per sentinel, which takes the primary a sentinel announces
    at once (``pushed``); ``watch`` registers callbacks for those pushes."""

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
        #: How long an answer (asked or pushed) stands before the sentinels are asked again.
        self.check_seconds = CHECK_SECONDS
        self._pushes = 0
        self._pushed_until = 0.0
        self._watchers: list[Callable[[Address], object]] = []
        self._listening_in: int | None = None
        #: The sentinels (index in ``sentinels``) whose events this process hears now.
        self.listening: set[int] = set()

    def discover_master(self, service_name: str) -> Address:
        """The primary of ``service_name`` (redis-py's answer: a sentinel that sees it up).
        Raises MasterNotFoundError (a redis ConnectionError) when no sentinel names one.

        For this Primary's service, a primary a sentinel pushed less than ``check_seconds``
        ago is the answer without asking: the sentinels asked may still name the old one (a
        sentinel not leading the failover, until it hears the new configuration), and a
        connection must not go back there."""
        if service_name != self.service:
            return self._ask(service_name)
        self._listen()
        with self._lock:
            if self.address is not None and time.monotonic() < self._pushed_until:
                return self.address
            pushes = self._pushes
        address = self._ask(service_name)
        self._note(tuple(address), pushes)  # type: ignore[arg-type]
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
        """The primary the sentinels named at most ``check_seconds`` ago; None before any answer.
        Asks them when the last answer is older — one caller at a time, the others take the
        last answer, and sentinels that do not answer leave it as it was — so a caller pays a
        sentinel round trip at most every ``check_seconds`` per process, and a clock read else."""
        self._listen()
        now = time.monotonic()
        if now < self._next_check or not self._asking.acquire(blocking=False):
            return self.address
        try:
            self._next_check = now + self.check_seconds
            with contextlib.suppress(redis.RedisError):
                self.current()
            return self.address
        finally:
            self._asking.release()

    def _note(self, address: Address, pushes: int | None = None) -> bool:
        """Take ``address`` as the primary; True when that is a switch. An answer asked for
        before a push that came meanwhile (``pushes`` no longer current) is dropped: it may
        name the primary the push moved away from, which would count two switches."""
        with self._lock:
            if pushes is not None and pushes != self._pushes:
                return False
            self._next_check = time.monotonic() + self.check_seconds
            switched = self.address is not None and address != self.address
            self.address = address
            if switched:
                self.switches += 1
        if switched and self.on_switch is not None:
            self.on_switch()
        return switched

    def pushed(self, address: Address) -> None:
        """A sentinel announced ``address`` as the primary: take it now (a switch counts once
        however many sentinels and events announce it) and tell the watchers. Each event also
        drops the answers asked for before it and stands for ``check_seconds``: until the
        failover ends, the sentinels asked may still name the old primary."""
        with self._lock:
            self._pushes += 1
            self._pushed_until = time.monotonic() + self.check_seconds
            if address == self.address:
                return
        if not self._note(address):
            return
        log.warning("a sentinel names a new primary %s:%d", *address)
        for callback in list(self._watchers):
            with contextlib.suppress(Exception):
                callback(address)

    def watch(self, callback: Callable[[Address], object]) -> None:
        """Call ``callback(address)`` (in the listener's thread or greenlet, so it must not
        block) when a sentinel announces a new primary; starts the listeners."""
        self._watchers.append(callback)
        self._listen()

    # -- the listeners ------------------------------------------------------------------------

    def _listen(self) -> None:
        """Start one daemon listener per sentinel, once per process (a Primary built before a
        fork starts its own in the child on first use)."""
        pid = os.getpid()
        if self._listening_in == pid:
            return
        with self._lock:
            if self._listening_in == pid:
                return
            self._listening_in = pid
        for index, sentinel in enumerate(self.sentinels):
            threading.Thread(
                target=_follow_events, args=(weakref.ref(self), index, sentinel), daemon=True,
                name=f"sentinel-events-{self.service}",
            ).start()

    def _heard(self, channel: bytes | str, data: bytes | str) -> None:
        event = channel.decode() if isinstance(channel, bytes) else channel
        payload = data.decode() if isinstance(data, bytes) else data
        address = pushed_primary(event, payload, self.service)
        if address is not None:
            self.pushed(address)


def _follow_events(ref: weakref.ref[Primary], index: int, sentinel: redis.Redis) -> None:
    """Subscribe to ``sentinel``'s switch events for the Primary ``ref`` names, until it is
    gone: reconnect with backoff after an error, and after three ``check_seconds`` without an
    answer to a PING (a cut that closed nothing). Never raises: the Primary's asking every
    ``check_seconds`` is the fallback. Holds the Primary only while handling a message, so that
    a Primary no longer used (a test's, a closed app's) ends its listeners."""
    backoff = 0.1
    while ref() is not None:
        pubsub = sentinel.pubsub()
        try:
            pubsub.subscribe(*SWITCH_EVENTS)
            heard = time.monotonic()
            while (primary := ref()) is not None:
                wait, primary = min(primary.check_seconds, CHECK_SECONDS), None
                message = pubsub.get_message(timeout=wait)
                now = time.monotonic()
                if message is None:
                    if now - heard > 3 * wait:
                        raise redis.TimeoutError("the sentinel stopped answering PING")
                    if now - heard > wait:
                        pubsub.ping()
                    continue
                heard = now
                if (primary := ref()) is None:
                    break
                if message["type"] == "subscribe":
                    primary.listening.add(index)
                    backoff = 0.1  # a sentinel that answered: the next drop retries soon
                elif message["type"] == "message":
                    primary._heard(message["channel"], message["data"])
                primary = None
        except Exception as error:  # noqa: BLE001 - a listener must never end on an error
            log.info("sentinel events: %s; listening again", type(error).__name__)
        finally:
            if (primary := ref()) is not None:
                primary.listening.discard(index)
            primary = None
            with contextlib.suppress(Exception):
                pubsub.close()
        time.sleep(backoff * random.uniform(0.5, 1.5))
        backoff = min(backoff * 2, LISTEN_BACKOFF_SECONDS)


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
    left on a former primary). A cluster client (no one pool) asks shared/clusterstate.py."""
    pool = getattr(client, "connection_pool", None)
    if pool is None:
        return cluster_not_ready(client)
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
