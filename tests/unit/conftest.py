"""Fixtures for the unit tests. In-process stream tests (tests/unit/inprocess.py says how gevent
runs here): a hub, subscribers on socketpairs, a broker and Resume on the session's real Redis, a
started StreamState, an idle StreamWorker; a private var dir. Publisher tests: publishers with
overrides, a Redis client to inspect with, raw pub/sub subscriptions, a private primary with a
replica. Token tests: a hand-set clock and a key. Readiness tests: gevent's ``poll`` as a stream
worker has it. The session's redis, configs, tokens and publisher are in tests/conftest.py."""

from __future__ import annotations

import contextlib
import secrets
import select
import socket
from pathlib import Path
from types import SimpleNamespace

import gevent
import gevent.select
import pytest
from itsdangerous import TimestampSigner
from redis._parsers import hiredis

import eventgate.shared.tokens as tokens_module
from eventgate.shared.publisher import Publisher
from eventgate.shared.redisconn import connect, connect_pubsub
from eventgate.shared.tokens import ChannelTokens
from eventgate.stream import readiness
from eventgate.stream import worker as worker_module
from eventgate.stream.broker import Broker
from eventgate.stream.hub import Hub
from eventgate.stream.resume import Resume
from eventgate.stream.state import StreamState
from eventgate.stream.subscriber import Subscriber
from eventgate.stream.worker import StreamWorker
from tests.servers import LOOPBACK, RedisServer, wait_for
from tests.unit.inprocess import CountingSocket, Peer
from tests.unit.subscription import Subscription
from tests.unit.tokenclock import T0, Clock


@pytest.fixture
def hub() -> Hub:
    return Hub()


@pytest.fixture
def make_subscriber(hub):
    """Factory: ``make_subscriber(channels, live_at=None, counted=False, **options)`` →
    ``(subscriber, peer)``: a Subscriber writing to one end of a socketpair (wrapped in a
    CountingSocket when ``counted``), ``peer`` the other end. With ``live_at`` it is registered
    with ``hub`` and live, standing at that id on every channel, as after its hand-off.
    Closing it removes it from ``hub``, as a real connection's close does; every one still open
    is closed after the test."""
    made: list[tuple[Subscriber, Peer]] = []

    def make(channels=("a",), *, live_at: str | None = None, counted: bool = False, **options):
        ours, theirs = socket.socketpair()
        ours.setblocking(False)
        # A small kernel buffer whatever the machine's default: a 1 MiB frame never fits.
        ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 16)
        options.setdefault("on_close", hub.remove)
        options.setdefault("max_queue_bytes", 1 << 20)
        options.setdefault("max_queue_frames", 1000)
        subscriber = Subscriber(
            CountingSocket(ours) if counted else ours,
            channels,
            loop=gevent.get_hub().loop,
            **options,
        )
        if live_at is not None:
            hub.add(subscriber)
            subscriber.positions.update(dict.fromkeys(subscriber.channels, live_at))
            subscriber.live = True
        pair = (subscriber, Peer(theirs))
        made.append(pair)
        return pair

    yield make
    for subscriber, peer in made:
        subscriber.close()
        with contextlib.suppress(OSError):
            peer.sock.close()


@pytest.fixture
def config(make_config):
    return make_config()


@pytest.fixture
def client(config):
    return connect(config)


@pytest.fixture
def make_broker(hub, config, client):
    """Factory: ``make_broker(start=True)`` → a Broker feeding ``hub`` from the session's Redis,
    started unless told otherwise; stopped after the test."""
    made: list[Broker] = []

    def make(start: bool = True) -> Broker:
        broker = Broker(config, hub, client, connect_pubsub(config))
        made.append(broker)
        if start:
            broker.start()
        return broker

    yield make
    for broker in made:
        broker.stop()


@pytest.fixture
def resume(hub, make_broker, client) -> Resume:
    """A Resume over ``hub`` and a broker that is not started (not connected)."""
    return Resume(hub, make_broker(start=False), client)


@pytest.fixture
def var_dir(tmp_path) -> Path:
    """A var dir that does not exist yet, private to the test."""
    return tmp_path / "var"


@pytest.fixture
def state(make_config):
    """A StreamState built and started on the session's Redis (retry 1000 ms); its broker and
    greenlets are stopped after the test."""
    built = StreamState.build(make_config(retry_ms=1000))
    built.start()
    yield built
    built.broker.stop()
    gevent.killall(built.greenlets)


# -- publishing ----------------------------------------------------------------------------------


@pytest.fixture
def make_publisher(make_config):
    """Factory: ``make_publisher(**config overrides)`` → a Publisher on the session's Redis; its
    client is closed after the test."""
    clients = []

    def make(**overrides) -> Publisher:
        config = make_config(**overrides)
        client = connect(config)
        clients.append(client)
        return Publisher(client, config)

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def inspector(redis_server):
    """A plain client the test reads Redis with (not the one under test)."""
    client = redis_server.client()
    yield client
    client.close()


@pytest.fixture
def subscribe(inspector):
    """Factory: ``subscribe(*channels)`` → a Subscription (tests/unit/subscription.py) to their
    live feeds, subscribed already; closed after the test."""
    subscriptions = []

    def make(*channels: str) -> Subscription:
        subscription = Subscription(inspector, list(channels))
        subscriptions.append(subscription)
        return subscription

    yield make
    for subscription in subscriptions:
        subscription.close()


@pytest.fixture
def built():
    """Publishers a test built with from_url / from_config; their clients are closed after it."""
    publishers: list[Publisher] = []
    yield publishers.append
    for publisher in publishers:
        publisher.client.close()


def acknowledged(primary_client) -> bool:
    """Whether a replica acknowledges a write of this client's within 100 ms."""
    pipe = primary_client.pipeline(transaction=False)
    pipe.set("replication-probe", 1).wait(1, 100)
    return pipe.execute()[1] >= 1


@pytest.fixture
def replicated(tmp_path):
    """``(primary, replica)``: a private redis-server and one replica of it, in sync (the
    session's redis stays without replicas); both stopped after the test."""
    # Full sync at once (not after diskless sync's 5 s delay); the replica without AOF (it
    # would not stop while writing its first AOF after the sync).
    primary = RedisServer(tmp_path / "primary", extra=("--repl-diskless-sync-delay", "0"))
    replica = RedisServer(tmp_path / "replica", extra=(
        "--appendonly", "no", "--replicaof", LOOPBACK, str(primary.port),
    ))
    primary.start()
    try:
        replica.start()
        with primary.client() as watch:
            # Until a write is acknowledged as a durable publish's will be: after a full sync
            # the primary streams to a replica only once that replica's first ACK came (within
            # a second), though it already lists it as online.
            wait_for(lambda: acknowledged(watch), 15, "the replica in sync", replica.log)
        yield primary, replica
    finally:
        replica.stop()
        primary.stop()


# -- tokens --------------------------------------------------------------------------------------


@pytest.fixture
def clock(monkeypatch) -> Clock:
    """The clock of shared.tokens and itsdangerous, at T0 until the test sets ``clock.now``."""
    clock = Clock(T0)
    monkeypatch.setattr(tokens_module, "time", SimpleNamespace(time=clock.time))
    monkeypatch.setattr(TimestampSigner, "get_timestamp", lambda self: int(clock.now))
    return clock


@pytest.fixture
def key() -> str:
    """A fresh signing key."""
    return secrets.token_urlsafe(32)


@pytest.fixture
def channel_tokens(key, clock) -> ChannelTokens:
    """ChannelTokens with ``key``, on ``clock``."""
    return ChannelTokens([key])


@pytest.fixture
def patched_worker(monkeypatch):
    """A socketpair, with ``select.poll`` gevent's, as in a stream worker, and redis-py's
    readiness check installed (stream/readiness.py); both are undone after."""
    monkeypatch.setattr(select, "poll", gevent.select.poll)
    monkeypatch.setattr(hiredis, "select", hiredis.select)
    assert readiness.install()
    pair = socket.socketpair()
    yield pair
    for sock in pair:
        sock.close()


@pytest.fixture
def idle_worker(monkeypatch) -> StreamWorker:
    """A StreamWorker as after post_worker_init with the fast path: alive, no servers of its own,
    a heartbeat that counts."""
    monkeypatch.setattr(worker_module, "TICK_SECONDS", 3600.0)
    worker = StreamWorker.__new__(StreamWorker)
    worker.alive = True
    worker.sockets = []
    worker.notified = 0

    def notify() -> None:
        worker.notified += 1

    worker.notify = notify
    return worker
