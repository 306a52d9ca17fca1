"""Checking what clients received against what the publisher got confirmed, across faults.

The clients: three on one channel and one on two channels, all browser-like (they reconnect with
Last-Event-ID). The check: each ends with exactly the confirmed sequence of each of its channels —
in order, nothing missing, nothing twice, and no loss notice (history was never exhausted).
"""

from __future__ import annotations

import contextlib
import json

from eventgate.shared.tokens import ChannelTokens
from tests.clients import EventSourceClient
from tests.servers import wait_for
from tests.stream.paced import PacedPublisher


def on_channel(client: EventSourceClient, channel: str) -> list[int]:
    """The numbers ``client`` received on ``channel``, in arrival order."""
    out = []
    for event in list(client.events):
        if event.type != "message":
            continue
        if "=" in event.last_event_id:
            owner = event.last_event_id.split(",")[0].split("=")[0]
        else:
            owner = client.channels[0] if client.channels else None
        if owner in (channel, None):
            out.append(json.loads(event.data)["n"])
    return out


def assert_exact(client: EventSourceClient, channel: str, expected: list[int], timeout=30):
    with contextlib.suppress(AssertionError):  # the comparison below says what is wrong
        wait_for(lambda: len(on_channel(client, channel)) >= len(expected), timeout,
                 f"{len(expected)} events on {channel}")
    got = on_channel(client, channel)
    assert got == expected, (
        f"{len(got)} of {len(expected)}; connections={client.connections}; "
        f"first missing={sorted(set(expected) - set(got))[:5]}; "
        f"duplicates={len(got) - len(set(got))}"
    )
    assert not [e for e in client.events if e.type == "eventgate.lost"]


def connect_clients(port: int, tokens: ChannelTokens, channels: list[str]):
    """Three clients on ``channels[0]`` and one on all of ``channels``, connected."""
    one, _ = tokens.issue([channels[0]])
    both, _ = tokens.issue(channels)
    clients = [EventSourceClient(port, one, (channels[0],)).start() for _ in range(3)]
    clients.append(EventSourceClient(port, both, tuple(channels)).start())
    wait_for(lambda: all(c.opened for c in clients), 10, "every client's stream to open")
    return clients


def assert_sequences(clients, paced: PacedPublisher, channels: list[str]) -> None:
    """Wait for the publisher, then check every client's sequences and stop the clients."""
    paced.wait(90)
    for client in clients[:3]:
        assert_exact(client, channels[0], paced.accepted[channels[0]])
    for name in channels:
        assert_exact(clients[3], name, paced.accepted[name])
    for client in clients:
        assert client.failed_status is None  # never a non-200: EventSource would give up
        client.stop()
