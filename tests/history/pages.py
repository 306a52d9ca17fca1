"""What a history page must hold, read from the log itself (XRANGE), and the walk that follows
a page's ``Link`` header to the end."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime

import redis

from eventgate.shared import keys

_LINK = re.compile(r'<([^>]+)>; rel="next"')


def expected_events(client: redis.Redis, channel: str) -> list[dict]:
    """The channel's whole log as page events: id, type, data (the published JSON value),
    time (the id's milliseconds, ISO 8601 UTC)."""
    events = []
    for entry_id, fields in client.xrange(keys.log_key(channel)):
        event_id = entry_id.decode()
        ms = int(event_id.split("-")[0])
        stamp = datetime.fromtimestamp(ms / 1000, UTC)
        events.append({
            "id": event_id,
            "type": fields[b"type"].decode(),
            "data": json.loads(fields[b"data"]),
            "time": stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z",
        })
    return events


def walk(fetch: Callable[[str], tuple[int, dict[str, str], dict]], first: str) -> list[dict]:
    """Follow ``first`` and every ``Link: <…>; rel="next"`` after it; ``fetch(target)`` answers
    ``(status, headers with lower-case names, JSON body)``. Returns each page's body; checks
    that ``next`` and the link agree."""
    pages, target = [], first
    while target is not None:
        status, headers, body = fetch(target)
        assert status == 200, body
        pages.append(body)
        link = headers.get("link")
        if body["next"] is None:
            assert link is None
            target = None
        else:
            match = _LINK.fullmatch(link or "")
            assert match, link
            target = match.group(1)
            assert f"after={body['next']}" in target
            assert body["next"] == body["events"][-1]["id"]
        assert len(pages) < 100, "the pages never end"
    return pages
