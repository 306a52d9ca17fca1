"""ShardedBroker: the broker under Redis Cluster — one pub/sub connection per shard, not per client.

Under Cluster a channel's live events go over sharded pub/sub (``SPUBLISH``), which only the
primary owning the channel's hash slot (and its replicas) delivers: a worker needs a connection
to every shard it holds channels of. Each is a ``Shard``: its own connection, read by the
single-Redis broker's reader (``Replies``: one ``recv`` per wake-up, parsed by hiredis) in a
greenlet of its own, its own PING keepalive and reconnect with backoff. Everything about a
channel's position — accepting in sequence, holding after a gap, backfilling from the log and
announcing loss — is the single-Redis Broker's, inherited unchanged, so the loss rules hold per
shard exactly as they do for one Redis.

The cluster moves under the connections; three signs say so, and each leads to ``rehome``, which
reads the slot map again, moves every channel whose slot now belongs to another primary to that
shard's connection, and backfills it from its log (what was published while it moved):

- a connection drops (a primary killed, ``CLIENT KILL``, a partition noticed by the keepalive);
- Redis ends a subscription we did not end (``sunsubscribe`` pushed when a slot migrates away, or
  a primary is demoted), or answers a subscribe with an error (``MOVED``);
- every ``CHECK_SECONDS`` the slot map is compared anyway (a demoted primary that says nothing).

A worker cut from the cluster (its host's link down: nothing is refused, packets just vanish)
learns it from the keepalive — a PING a second, a connection given up after ``DEAD_AFTER_PINGS``
unanswered — and then from the slot map, which no node answers. Unlike a single Redis, a cluster
deployment runs several stream nodes, and another may well reach the cluster: once no node has
answered for ``SHED_AFTER_SECONDS`` the worker ends its streams, each with a jittered ``retry:``
(its readiness fails too), so the clients come back through the proxy to a node that can serve
them and resume from their cursors. One shard down while the others answer is a primary failing
over, not a cut: its streams stay, and are backfilled once its replica took over.

Control messages (revocations: shared/revocations.py) are plain pub/sub, which a cluster forwards
to every node: one more connection, to any node, SUBSCRIBEs to ``keys.CONTROL_CHANNEL`` for as
long as the worker runs, kept alive and moved to another node like a shard's.

Subscriptions are grouped by partition (shared/keys.py): the channels of one partition share a
hash slot, so one ``SSUBSCRIBE`` covers them, and a reconnect costs one command per partition
held, sent in one write per shard. A reconnect's backfill first asks every channel's newest id
in one pipelined round trip per shard, and reads the log only of channels that moved on.
"""

from __future__ import annotations

import contextlib
import logging
import random
import time
from collections.abc import Callable, Iterable

import gevent
import gevent.event
import gevent.lock
import redis
from redis.crc import key_slot

from eventgate.shared import keys, sse
from eventgate.shared.config import Config
from eventgate.shared.events import moved_on
from eventgate.shared.primary import CHECK_SECONDS
from eventgate.shared.redisconn import LazyCluster
from eventgate.stream.broker import Broker, Replies
from eventgate.stream.hub import Hub

log = logging.getLogger("eventgate.stream.shards")

_ERRORS = (redis.RedisError, OSError)
#: One shard's address: ``host:port`` of its primary.
NodeName = str
#: PING period on every shard connection, and how many may go unanswered before it is dead.
PING_SECONDS = 1.0
DEAD_AFTER_PINGS = 3
#: How long a shard may stay unreachable before the streams on its channels are sent elsewhere.
SHED_AFTER_SECONDS = 2.0


def by_partition(names: Iterable[str]) -> list[list[str]]:
    """``names`` grouped by partition (one slot each): the argument lists of one command each."""
    groups: dict[int, list[str]] = {}
    for name in names:
        groups.setdefault(keys.partition(name), []).append(name)
    return list(groups.values())


class Shard:
    """One shard's pub/sub connection and the channels this worker follows on it."""

    def __init__(self, node: NodeName, client: redis.Redis) -> None:
        self.node = node
        self.client = client
        self.channels: set[str] = set()
        self.pubsub: redis.client.PubSub | None = None
        self.replies: Replies | None = None
        self.connected = False
        self.last_pong = 0.0
        self.lock = gevent.lock.Semaphore()
        self.wanted = gevent.event.Event()  # set while it has channels to follow
        self.greenlet: gevent.Greenlet | None = None

    def write(self, command: str, names: Iterable[str]) -> None:
        """``ssubscribe``/``sunsubscribe`` ``names``, one command per partition, in one write."""
        groups = by_partition(names)
        with self.lock:
            if self.pubsub is None:
                raise redis.ConnectionError("not connected")
            for group in groups:
                getattr(self.pubsub, command)(*[keys.live_channel(name) for name in group])

    def ping(self) -> None:
        with self.lock:
            if self.pubsub is None:
                raise redis.ConnectionError("not connected")
            self.pubsub.ping()


class ShardedBroker(Broker):
    """The Broker with one pub/sub connection per shard (see the module's docstring).
    ``node_client(host, port)`` makes the client of a shard's pub/sub connection,
    ``control_client`` (default ``node_client``) that of the control channel's."""

    def __init__(
        self,
        config: Config,
        hub: Hub,
        client: LazyCluster,
        node_client: Callable[[str, int], redis.Redis],
        control_client: Callable[[str, int], redis.Redis] | None = None,
    ) -> None:
        super().__init__(config, hub, client, client)  # type: ignore[arg-type]
        self._node_client = node_client
        self._control_client = control_client or node_client
        self.shards: dict[NodeName, Shard] = {}
        self._home: dict[str, NodeName] = {}
        self._moved = gevent.event.Event()
        self.moves = 0
        #: Streams ended because no node of the cluster answered (see _shed).
        self.shed = 0
        #: Since when no node answered for the slot map (None: one did, last time asked).
        self.unreachable_since: float | None = None
        #: The control channel's connection (a plain SUBSCRIBE on any node), while it is up.
        self.control: Shard | None = None
        self._slots = [key_slot(keys.partition_tag(n).encode()) for n in range(keys.PARTITIONS)]

    @property
    def connected(self) -> bool:  # type: ignore[override]
        """Every shard this worker follows channels on is connected."""
        return all(s.connected for s in self.shards.values() if s.channels)

    @connected.setter
    def connected(self, value: bool) -> None:
        pass  # the single-Redis broker's flag; here each shard has its own

    @property
    def failovers(self) -> int:
        """Times the slot map sent this worker's channels to another shard."""
        return self.moves

    def unreachable(self) -> bool:
        """No node of the cluster answered the last read of the slot map: new streams are
        refused without an answer, so that the proxy sends them to another stream node."""
        return self.unreachable_since is not None

    def start(self) -> None:
        self._greenlets = [gevent.spawn(self._janitor), gevent.spawn(self._keepalive),
                           gevent.spawn(self._rehome_loop), gevent.spawn(self._run_control)]

    def stop(self) -> None:
        gevent.killall(self._greenlets, block=False)
        if self.control is not None:
            self._drop(self.control)
        for shard in self.shards.values():
            if shard.greenlet is not None:
                shard.greenlet.kill(block=False)
            self._drop(shard)

    # -- where channels live ------------------------------------------------------------------

    def _owner(self, name: str) -> NodeName:
        node = self.redis.cluster().nodes_manager.get_node_from_slot(
            self._slots[keys.partition(name)]
        )
        return node.name

    def _shard(self, node: NodeName) -> Shard:
        shard = self.shards.get(node)
        if shard is None:
            host, _, port = node.rpartition(":")
            shard = self.shards[node] = Shard(node, self._node_client(host, int(port)))
            shard.greenlet = gevent.spawn(self._run_shard, shard)
        return shard

    def _place(self, names: list[str]) -> dict[NodeName, list[str]]:
        """Put ``names`` on their owners' shards; returns them grouped by shard."""
        placed: dict[NodeName, list[str]] = {}
        for name in names:
            node = self._owner(name)
            self._home[name] = node
            shard = self._shard(node)
            shard.channels.add(name)
            shard.wanted.set()
            placed.setdefault(node, []).append(name)
        return placed

    # -- subscriptions ------------------------------------------------------------------------

    def _subscribe_new(self, names: list[str]) -> None:
        try:
            placed = self._place(names)
        except _ERRORS + (redis.exceptions.RedisClusterException,):
            self._home.update(dict.fromkeys(names, ""))
            self._moved.set()  # no slot map: the rehome loop places them once one answers
            return
        self._write_placed(placed, "ssubscribe")

    def _unsubscribe_gone(self, names: list[str]) -> None:
        leaving: dict[NodeName, list[str]] = {}
        for name in names:
            node = self._home.pop(name, "")
            shard = self.shards.get(node)
            if shard is not None:
                shard.channels.discard(name)
                leaving.setdefault(node, []).append(name)
        self._write_placed(leaving, "sunsubscribe")

    def _write_placed(self, placed: dict[NodeName, list[str]], command: str) -> None:
        """``command`` the channels of each shard on its connection, if it is up. On failure
        the shard's reader sees the drop too, and its reconnect subscribes what it holds."""
        for node, names in placed.items():
            shard = self.shards[node]
            if shard.connected:
                with contextlib.suppress(*_ERRORS):
                    shard.write(command, names)

    # -- one shard's connection ---------------------------------------------------------------

    def _run_shard(self, shard: Shard) -> None:
        backoff = 0.1
        first = True
        while True:
            if not shard.channels:  # none left here (released, or moved to another shard)
                shard.wanted.clear()
                shard.wanted.wait()
                continue
            try:
                self._connect_shard(shard)
                backoff = 0.1
                if not first:
                    self.reconnects += 1
                    log.warning("pub/sub to %s reconnected; backfilling %d channels",
                                shard.node, len(shard.channels))
                first = False
                self._backfill_moved(list(shard.channels))
                self._read_shard(shard)
            except _ERRORS as error:
                if shard.connected:
                    log.warning("pub/sub connection to %s lost: %s", shard.node,
                                type(error).__name__)
                self._moved.set()  # a primary gone, a slot moved: read the slot map again
            self._drop(shard)
            gevent.sleep(backoff * random.uniform(0.5, 1.5))
            backoff = min(backoff * 2, 1.0)

    def _connect_shard(self, shard: Shard) -> None:
        pubsub = shard.client.pubsub(ignore_subscribe_messages=False)
        with shard.lock:
            shard.pubsub = pubsub
        # Writing yields (the connect, the sends): channels placed meanwhile saw the shard not
        # yet connected and left their SSUBSCRIBE to this one; nothing yields between the last
        # check and ``connected`` (later ones write their own).
        sent: set[str] = set()
        while pending := shard.channels - sent:
            shard.write("ssubscribe", list(pending))
            sent |= pending
        if pubsub.connection is None:  # the channels left while it connected: nothing to read
            raise redis.ConnectionError("no channel to follow on this shard")
        shard.last_pong = time.monotonic()
        shard.connected = True

    def _drop(self, shard: Shard) -> None:
        shard.connected = False
        for name in shard.channels:
            confirmed = self._active.get(name)
            if confirmed is not None:
                confirmed.clear()
        with shard.lock:
            pubsub, shard.pubsub = shard.pubsub, None
        if pubsub is not None:
            with contextlib.suppress(*_ERRORS):
                pubsub.close()

    def _read_shard(self, shard: Shard) -> None:
        pubsub = shard.pubsub
        assert pubsub is not None
        shard.replies = replies = Replies(pubsub)
        try:
            while True:
                self._dispatch_shard(shard, pubsub, replies.read())
        finally:
            shard.replies = None
            replies.close()

    def _dispatch_shard(self, shard: Shard, pubsub: redis.client.PubSub, replies: list) -> None:
        accepted: list[tuple[str, str, str, bytes]] = []
        for reply in replies:
            if isinstance(reply, list) and len(reply) == 3 and reply[0] == b"smessage":
                self._accept(keys.channel_of_live(reply[1].decode("utf-8")), reply[2], accepted)
                continue
            if reply == b"PONG":  # a connection left with no subscription answers plainly
                shard.last_pong = time.monotonic()
                continue
            message = pubsub.handle_message(reply)
            if message is None:
                continue
            kind = message["type"]
            if kind == "ssubscribe":
                name = keys.channel_of_live(message["channel"].decode("utf-8"))
                confirmed = self._active.get(name)
                if confirmed is not None and self._home.get(name) == shard.node:
                    confirmed.set()
            elif kind == "sunsubscribe":
                name = keys.channel_of_live(message["channel"].decode("utf-8"))
                if name in shard.channels:
                    # Redis ended a subscription we still want: its slot left this primary.
                    log.warning("%s dropped channel %s (slot moved)", shard.node, name)
                    self._moved.set()
            elif kind == "pong":
                shard.last_pong = time.monotonic()
        if accepted:
            self.hub.broadcast_all(accepted)

    # -- the control channel ------------------------------------------------------------------

    def _run_control(self) -> None:
        """Follow ``keys.CONTROL_CHANNEL`` (revocations) on one node, any node: a cluster
        forwards a plain PUBLISH to every node's subscribers. Shard connections cannot carry
        it (they only SSUBSCRIBE, and exist only while they hold channels); this one lives as
        long as the worker, and moves to another node when its node stops answering."""
        backoff = 0.1
        while True:
            control = None
            try:
                node = random.choice(self.redis.cluster().get_nodes())
                control = Shard("control", self._control_client(node.host, int(node.port)))
                pubsub = control.pubsub = control.client.pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(keys.CONTROL_CHANNEL)
                control.last_pong = time.monotonic()
                control.connected = True
                control.replies = replies = Replies(pubsub)
                self.control = control
                backoff = 0.1
                while True:
                    for reply in replies.read():
                        if isinstance(reply, list) and len(reply) == 3 and reply[0] == b"message":
                            self.on_control(reply[2])
                        elif isinstance(reply, list) and reply[:1] == [b"pong"]:
                            control.last_pong = time.monotonic()
            except _ERRORS + (redis.exceptions.RedisClusterException,) as error:
                if control is not None and control.connected:
                    log.warning("control connection to the cluster lost: %s",
                                type(error).__name__)
            finally:
                self.control = None
                if control is not None:
                    if control.replies is not None:
                        control.replies.close()
                    self._drop(control)
                    control.client.close()
            gevent.sleep(backoff * random.uniform(0.5, 1.5))
            backoff = min(backoff * 2, 1.0)

    def _keepalive(self) -> None:
        """PING every shard connection each PING_SECONDS; interrupt one that stopped answering
        (its reader reconnects); shed the streams when no node answered for too long."""
        while True:
            gevent.sleep(PING_SECONDS)
            now = time.monotonic()
            cut = self.unreachable_since
            if cut is not None and now - cut > SHED_AFTER_SECONDS:
                self._shed(now - cut)
            control = [] if self.control is None else [self.control]
            for shard in [*self.shards.values(), *control]:
                replies = shard.replies
                if not shard.connected or replies is None:
                    continue
                if now - shard.last_pong > DEAD_AFTER_PINGS * PING_SECONDS:
                    log.warning("%s stopped answering PING on pub/sub", shard.node)
                    replies.interrupt()
                    continue
                with contextlib.suppress(*_ERRORS):
                    shard.ping()

    def _shed(self, seconds: float) -> None:
        """End every stream with a jittered ``retry:``: another stream node may reach the
        cluster, and they resume there from their cursors."""
        subscribers = list(self.hub.subscribers)
        if not subscribers:
            return
        log.warning("no cluster node answered for %.1f s: ending %d streams so that they "
                    "resume on another stream node", seconds, len(subscribers))
        retry_ms = self.config.retry_ms
        self.hub.finish_all(
            lambda: sse.retry(int(retry_ms * random.uniform(0.2, 2.0)))
            + sse.comment("redis unreachable"),
            subscribers,
        )
        self.shed += len(subscribers)

    # -- following the slot map ---------------------------------------------------------------

    def _rehome_loop(self) -> None:
        while True:
            self._moved.wait(CHECK_SECONDS)
            self._moved.clear()
            try:
                self.rehome()
            except _ERRORS + (redis.exceptions.RedisClusterException,) as error:
                if self.unreachable_since is None:
                    self.unreachable_since = time.monotonic()
                    log.warning("could not read the cluster's slot map: %s",
                                type(error).__name__)
                self._moved.set()
                gevent.sleep(0.2 * random.uniform(0.5, 1.5))
            else:
                self.unreachable_since = None

    def rehome(self) -> None:
        """Read the slot map again (``CLUSTER SLOTS`` of one node), move every channel whose
        primary changed to that primary's connection, and backfill it from its log."""
        self.redis.cluster().nodes_manager.initialize()
        moved: dict[NodeName, list[str]] = {}
        for name in list(self._active):
            node = self._owner(name)
            if self._home.get(name) != node:
                moved.setdefault(node, []).append(name)
        if not moved:
            return
        self.moves += 1
        for node, names in moved.items():
            for name in names:
                old = self.shards.get(self._home.get(name, ""))
                if old is not None:
                    # No SUNSUBSCRIBE there: a primary that lost the slot ended the
                    # subscription itself, and answers one for a slot it no longer serves
                    # with an error (which would cost that connection a reconnect).
                    old.channels.discard(name)
                    confirmed = self._active.get(name)
                    if confirmed is not None:
                        confirmed.clear()
            self._write_placed(self._place(names), "ssubscribe")
            log.warning("%d channels moved to %s", len(names), node)
            self._backfill_moved(names)

    def _backfill_moved(self, names: list[str]) -> None:
        """Backfill the channels of ``names`` that delivered something and whose log went on
        since: one XREAD per partition, pipelined (one round trip per shard: events.moved_on),
        then the logs of only those that moved on."""
        positions = {
            name: channel.last
            for name in names
            if (channel := self.hub.channels.get(name)) is not None and channel.last is not None
        }
        if not positions:
            return
        try:
            moved = moved_on(self.redis, positions)  # type: ignore[arg-type]
        except _ERRORS:
            moved = set(positions)  # read them all back: each retries until Redis answers
        for name in moved:
            channel = self.hub.channels.get(name)
            if channel is not None:
                self._start_backfill(channel)
