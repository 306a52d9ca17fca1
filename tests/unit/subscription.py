"""A raw pub/sub subscriber on the live channels (not the code under test): what a test reads
the publisher's live feed with."""

from __future__ import annotations

from eventgate.shared import keys
from tests.servers import wait_for


class Subscription:
    """A raw pub/sub subscriber on live channels; every wait has a deadline."""

    def __init__(self, inspector, channels: list[str]) -> None:
        self.pubsub = inspector.pubsub()
        self.pubsub.subscribe(*[keys.live_channel(c) for c in channels])
        for _ in channels:
            wait_for(lambda: self.pubsub.get_message(timeout=0.1), 5, "subscribe confirmation")

    def messages(self, count: int, timeout: float = 5.0) -> list[tuple[str, bytes]]:
        got: list[tuple[str, bytes]] = []

        def more() -> bool:
            message = self.pubsub.get_message(timeout=0.1)
            while message is not None and len(got) < count:
                if message["type"] == "message":
                    channel = keys.channel_of_live(message["channel"].decode())
                    got.append((channel, message["data"]))
                message = self.pubsub.get_message(timeout=0.0) if len(got) < count else None
            return len(got) >= count

        wait_for(more, timeout, f"{count} pub/sub messages")
        return got

    def close(self) -> None:
        self.pubsub.close()
