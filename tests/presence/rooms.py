"""Rooms: the presence tests' helper — streams on the presence pools, the presence API, and the
joins and leaves a channel's log holds."""

from __future__ import annotations

import json
import secrets

import redis
from flask.testing import FlaskClient

from eventgate.shared import keys
from eventgate.shared.tokens import ChannelTokens
from tests.clients import StreamClient, stream_path
from tests.stream.pool import StreamPool

#: What the pools announce on, and their grace period (heartbeat 1 s: leases of 3 s).
PATTERN = "room.*"
GRACE_SECONDS = 1.5
HEARTBEAT_SECONDS = 1.0
LEASE_SECONDS = 3 * HEARTBEAT_SECONDS


def room() -> str:
    """A channel that announces presence, used by one test only."""
    return f"room.{secrets.token_hex(6)}"


class Rooms:
    def __init__(self, pools: list[StreamPool], api: FlaskClient, publish_key: str,
                 tokens: ChannelTokens, client: redis.Redis) -> None:
        self.pools = pools
        self.api = api
        self.publish_key = publish_key
        self.tokens = tokens
        self.redis = client
        self.streams: list[StreamClient] = []

    def open(self, pool: int, channel: str, subject: str | None,
             headers: dict[str, str] | None = None) -> StreamClient:
        """A stream of ``subject`` on ``channel`` through pool number ``pool``, open."""
        token = self.tokens.issue([channel], subject=subject).token
        stream = StreamClient(self.pools[pool].port, stream_path(token, (channel,)), headers)
        self.streams.append(stream)
        return stream.start().wait_open()

    def presence(self, channel: str) -> dict:
        answer = self.api.get(f"/api/channels/{channel}/presence",
                              headers={"Authorization": f"Bearer {self.publish_key}"})
        assert answer.status_code == 200, answer.get_data(as_text=True)
        return answer.get_json()

    def publish(self, channel: str) -> str:
        answer = self.api.post("/api/events", json={"channel": channel, "data": "hello"},
                               headers={"Authorization": f"Bearer {self.publish_key}"})
        assert answer.status_code == 201, answer.get_data(as_text=True)
        return answer.get_json()["id"]

    def held(self, channel: str) -> tuple[int, dict[str, int]]:
        """(streams, {subject: streams}) from the API."""
        found = self.presence(channel)
        return found["streams"], {s["subject"]: s["streams"] for s in found["subjects"]}

    def announced(self, channel: str) -> list[tuple[str, str]]:
        """The (type, subject) of every join and leave in the channel's log, oldest first."""
        found = []
        for _, fields in self.redis.xrange(keys.log_key(channel)):
            kind = fields[b"type"].decode()
            if kind in ("eventgate.join", "eventgate.leave"):
                data = json.loads(fields[b"data"])
                assert data["channel"] == channel
                found.append((kind.removeprefix("eventgate."), data["subject"]))
        return found

    def close(self) -> None:
        for stream in self.streams:
            stream.close()
