"""Fixtures for the in-process stream tests (tests/unit/inprocess.py says how gevent runs here):
a hub, subscribers on socketpairs, and a broker and Resume on the session's real Redis; a
private var dir. The session's redis, configs and publisher are in tests/conftest.py."""

from __future__ import annotations

import contextlib
import socket
from pathlib import Path

import gevent
import pytest

from eventgate.shared.redisconn import connect, connect_pubsub
from eventgate.stream.broker import Broker
from eventgate.stream.hub import Hub
from eventgate.stream.resume import Resume
from eventgate.stream.subscriber import Subscriber
from tests.unit.inprocess import CountingSocket, Peer


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
