"""Tail: follow a stream the way a browser does, for ``eventgate tail``, printing each event.

Like EventSource, it keeps the last event id (the resume cursor) and reconnects with it as
``Last-Event-ID`` when the stream ends — the server ends it when the token expires, on shutdown,
or when this client fell too far behind — so nothing is missed and nothing is printed twice. Each
connection gets a freshly minted token. Reads are small and unbuffered (``read1``), so an event
is printed as soon as its bytes arrive. Needs the ``server`` extra (sseclient-py):
eventgate/cli.py imports this module only when ``eventgate tail`` runs.
"""

from __future__ import annotations

import http.client
import json
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TextIO
from urllib.parse import urlencode, urlsplit

import sseclient

from eventgate.shared.sse import TOKEN_EXPIRED_EVENT

CONNECT_TIMEOUT_SECONDS = 5.0
READ_BYTES = 4096
MAX_ERROR_BODY_BYTES = 65536
MIN_BACKOFF_SECONDS = 0.25
MAX_BACKOFF_SECONDS = 5.0


class TailError(Exception):
    """The stream cannot be followed: the server is not there at first, or refused the stream."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Tail:
    """Follows ``BASE/streams`` for ``channels`` and writes one line per event.

    Line format: ``<channel> <type> <data JSON>``, or with ``as_json`` one object
    ``{"channel", "id", "type", "data"}`` where ``id`` is the event's id on its channel.
    """

    def __init__(
        self,
        base_url: str,
        channels: Sequence[str],
        mint_token: Callable[[], str],
        *,
        last_event_id: str | None = None,
        as_json: bool = False,
        read_timeout_seconds: float = 45.0,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"--url must be an http:// or https:// URL, not {base_url!r}.")
        self._parts = parts
        self._base_url = f"{parts.scheme}://{parts.netloc}"
        self._channels = list(channels)
        self._mint_token = mint_token
        self._cursor = last_event_id or None
        self._as_json = as_json
        self._read_timeout_seconds = read_timeout_seconds
        self._printed = 0

    def run(self, out: TextIO) -> None:
        """Print events to ``out`` until interrupted. Raises TailError when the first connection
        fails or the server refuses the stream (4xx); later drops are retried with backoff,
        which grows while connections bring no event (e.g. the proxy's "retry later" answer)."""
        connected = False
        delay = MIN_BACKOFF_SECONDS
        while True:
            try:
                connection, response = self._open()
            except (OSError, http.client.HTTPException) as error:
                reason = _reason(error)
                if not connected:
                    raise TailError(f"cannot connect to {self._base_url}: {reason}.") from None
                _note(f"cannot reconnect to {self._base_url} ({reason}); retrying")
                time.sleep(delay)
                delay = min(delay * 2, MAX_BACKOFF_SECONDS)
                continue
            connected = True
            printed_before = self._printed
            try:
                self._follow(response, out)
            except BrokenPipeError:
                raise
            except (OSError, http.client.HTTPException) as error:
                _note(f"stream lost ({_reason(error)}); resuming")
            finally:
                connection.close()
            progressed = self._printed > printed_before
            delay = MIN_BACKOFF_SECONDS if progressed else min(delay * 2, MAX_BACKOFF_SECONDS)
            time.sleep(delay)

    def _open(self) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        query = [("token", self._mint_token())] + [("channel", name) for name in self._channels]
        path = f"{self._parts.path.rstrip('/')}/streams?{urlencode(query)}"
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
        if self._cursor:
            headers["Last-Event-ID"] = self._cursor
        kind = (
            http.client.HTTPSConnection if self._parts.scheme == "https"
            else http.client.HTTPConnection
        )
        connection = kind(self._parts.hostname, self._parts.port, timeout=CONNECT_TIMEOUT_SECONDS)
        try:
            connection.request("GET", path, headers=headers)
            response = connection.getresponse()
            if response.status != 200:
                self._refused(response)
            if connection.sock is not None:
                connection.sock.settimeout(self._read_timeout_seconds)
        except BaseException:
            connection.close()
            raise
        return connection, response

    def _refused(self, response: http.client.HTTPResponse) -> None:
        body = response.read(MAX_ERROR_BODY_BYTES)
        try:
            message = json.loads(body)["message"]
        except (ValueError, KeyError, TypeError):
            message = response.reason
        if response.status >= 500:  # the stream pool is down behind the proxy: worth retrying
            raise http.client.HTTPException(f"{response.status} {message}")
        raise TailError(f"the stream was refused ({response.status}): {message}")

    def _follow(self, response: http.client.HTTPResponse, out: TextIO) -> None:
        chunks = _remember_bare_ids(_chunks(response), self._remember)
        for event in sseclient.SSEClient(chunks).events():
            if event.id is not None:
                self._cursor = event.id or None
            # Not printed: tail renews its token and resumes by itself; not news to the reader.
            if event.event == TOKEN_EXPIRED_EVENT:
                continue
            out.write(self._line(event) + "\n")
            out.flush()
            self._printed += 1

    def _remember(self, cursor: str) -> None:
        self._cursor = cursor or None

    def _line(self, event: sseclient.Event) -> str:
        channel, event_id = self._locate(event.id)
        if not self._as_json:
            return f"{channel} {event.event} {event.data}"
        try:
            data = json.loads(event.data)
        except ValueError:
            data = event.data
        record = {"channel": channel, "id": event_id, "type": event.event, "data": data}
        return json.dumps(record, ensure_ascii=False, separators=(",", ":"))

    def _locate(self, cursor: str | None) -> tuple[str, str | None]:
        """The event's channel and its own id, from the cursor (``id`` or ``name=id,...``)."""
        if cursor and "=" in cursor:
            name, _, event_id = cursor.split(",", 1)[0].partition("=")
            return name, event_id
        if len(self._channels) == 1:
            return self._channels[0], cursor
        return "-", cursor


def _chunks(response: http.client.HTTPResponse) -> Iterator[bytes]:
    while chunk := response.read1(READ_BYTES):
        yield chunk


def _remember_bare_ids(chunks: Iterator[bytes], remember: Callable[[str], None]) -> Iterator[bytes]:
    """Pass ``chunks`` through, handing ``remember`` the ``id:`` of every frame without data.

    sseclient-py yields only frames with data, so it drops the stream's opening frame, the
    cursor the server sends before any event (stream/opening.py). EventSource keeps it as its
    last event ID, and so must tail: a stream cut before its first event then resumes from where
    it started. Each chunk is looked at before sseclient-py gets it, so an event's own id, seen
    later, still wins. Our server ends lines with LF only."""
    partial = b""
    bare_id: bytes | None = None
    has_data = False
    for chunk in chunks:
        *lines, partial = (partial + chunk).split(b"\n")
        for line in lines:
            if not line:
                if bare_id is not None and not has_data:
                    remember(bare_id.decode("ascii", "replace"))
                bare_id, has_data = None, False
            elif line.startswith(b"id:"):
                bare_id = line[4:] if line.startswith(b"id: ") else line[3:]
            elif line.startswith(b"data"):
                has_data = True
        yield chunk


def _reason(error: BaseException) -> str:
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error) or type(error).__name__


def _note(message: str) -> None:
    print(f"eventgate: {message}", file=sys.stderr, flush=True)
