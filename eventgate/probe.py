"""Probe: a deployment's public entry spoken to as a browser speaks to it, for ``eventgate doctor``.

Plain HTTP/1.1 over the standard library (TLS with the system's trust store, or a private CA),
one connection per request, as EventSource opens each stream. A stream is read frame by frame
with the arrival time of each, with small unbuffered reads (``read1``): what the doctor measures
is when bytes reach the client, so nothing here may wait for more than is there. The base
install has all this needs.

Tokens and keys travel in requests only: nothing here puts them in a message or an exception.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

READ_BYTES = 4096
MAX_BODY_BYTES = 65536
CONNECT_TIMEOUT_SECONDS = 5.0
#: What the site's access logs show for the doctor's requests.
USER_AGENT = "eventgate-doctor"


class ProbeError(Exception):
    """The site did not answer: no connection, TLS refused, the connection dropped mid-answer.
    ``message`` is a sentence naming the site, never a request's path (it may hold a token);
    ``timed_out`` when the site was there but its answer did not come in time."""

    def __init__(self, message: str, timed_out: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.timed_out = timed_out


@dataclass(frozen=True)
class Answer:
    """A whole, short answer: status, headers (lower-case names), body."""

    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> dict:
        """The body as a JSON object, {} when it is not one."""
        try:
            value = json.loads(self.body)
        except ValueError:
            return {}
        return value if isinstance(value, dict) else {}

    def message(self) -> str:
        """The JSON error's human sentence, else the start of the body."""
        text = self.json().get("message")
        if isinstance(text, str):
            return text
        return self.body[:200].decode("utf-8", "replace").strip() or "(no body)"


@dataclass(frozen=True)
class Frame:
    """One SSE frame as it arrived: a comment (``comment`` holds its text), or a dispatch with
    its fields (an ``id`` alone is the stream's opening cursor). ``at`` is ``time.monotonic()``
    when its last byte arrived."""

    at: float
    comment: str | None = None
    id: str | None = None
    event: str | None = None
    data: str | None = None
    retry: str | None = None


class Stream:
    """An open ``/streams`` answer: its status and headers, then its frames as they arrive."""

    def __init__(self, connection: http.client.HTTPConnection,
                 response: http.client.HTTPResponse) -> None:
        self._connection = connection
        self._response = response
        self.status = response.status
        self.headers = {name.lower(): value for name, value in response.getheaders()}
        self.opened_at = time.monotonic()
        self._partial = b""
        self._fields: dict[str, str] = {}
        self._ready: list[Frame] = []
        self.closed = False
        self.expired = False

    def next_frame(self, deadline: float) -> Frame | None:
        """The next frame, or None once ``deadline`` (monotonic) passed or the stream ended
        (``closed`` then says which): a proxy closing an idle stream is an answer, not an error.

        A deadline that passes during a read ends the stream's use (``expired``): the standard
        library's socket file refuses every read after a timeout. So a caller's deadline must
        be the end of what it waits for, never a pause in the middle."""
        while not self._ready:
            if deadline <= time.monotonic() or self.closed or self.expired:
                return None
            chunk = self._read(deadline)
            if not chunk:
                return None
            self._parse(chunk, time.monotonic())
        return self._ready.pop(0)

    def body_until(self, deadline: float) -> bytes:
        """What the stream sends until it ends or ``deadline``, for short answers (the proxy's
        retry fallback)."""
        data = b""
        while not (self.closed or self.expired) and time.monotonic() < deadline:
            data += self._read(deadline)
        return data

    def _read(self, deadline: float) -> bytes:
        """What has arrived, waiting until ``deadline`` at most; b"" when the stream ended
        (``closed``: a reset, or a chunked body cut short, is the proxy dropping the stream) or
        the deadline passed during the read (``expired``)."""
        try:
            self._connection.sock.settimeout(max(deadline - time.monotonic(), 0.01))
            chunk = self._response.read1(READ_BYTES)
        except TimeoutError:
            self.expired = True
            return b""
        except (OSError, http.client.HTTPException, AttributeError):
            chunk = b""
        if not chunk:
            self.closed = True
        return chunk

    def close(self) -> None:
        self._connection.close()

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _parse(self, chunk: bytes, at: float) -> None:
        *lines, self._partial = (self._partial + chunk).split(b"\n")
        for raw in lines:
            line = raw.rstrip(b"\r").decode("utf-8", "replace")
            if not line:
                if self._fields:
                    self._ready.append(Frame(at=at, **self._fields))
                self._fields = {}
            elif line.startswith(":"):
                self._ready.append(Frame(at=at, comment=line[1:].strip()))
            else:
                name, _, value = line.partition(":")
                if name in ("id", "event", "data", "retry"):
                    self._fields[name] = value[1:] if value.startswith(" ") else value


class Site:
    """A deployment's public entry, ``http(s)://host[:port][/prefix]``.

    Raises ValueError for a URL that is not one (the command's usage error)."""

    def __init__(self, url: str, *, cafile: str | None = None) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(
                f"the URL must be the site's http:// or https:// address, not {url!r}."
            )
        try:
            self.port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            raise ValueError(f"the URL's port is not a number: {url!r}.") from None
        if parts.query or parts.fragment:
            raise ValueError("the URL must be the site's address alone, without ? or #.")
        self.scheme = parts.scheme
        self.host = parts.hostname
        self.prefix = parts.path.rstrip("/")
        # never a user:password@ the URL may carry: the origin goes into messages
        self.origin = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"
        self._cafile = cafile
        self._context: ssl.SSLContext | None = None
        if self.scheme == "https":
            self._context = self._tls_context(["http/1.1"])

    @property
    def tls(self) -> bool:
        return self.scheme == "https"

    def post_json(self, path: str, body: object, bearer: str) -> Answer:
        """POST a JSON body with ``Authorization: Bearer``; the whole answer."""
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {bearer}",
                   "User-Agent": USER_AGENT}
        return self._whole("POST", path, json.dumps(body).encode(), headers)

    def get(self, path: str, headers: Mapping[str, str] | None = None) -> Answer:
        return self._whole("GET", path, None, {"User-Agent": USER_AGENT, **(headers or {})})

    def open_stream(self, query: list[tuple[str, str]],
                    headers: Mapping[str, str] | None = None,
                    head_seconds: float = CONNECT_TIMEOUT_SECONDS) -> Stream:
        """``GET /streams?query`` as EventSource sends it; returns once the answer's head is in
        (any status: the caller reads what it means). A buffering proxy may hold the head back
        with the first events: ProbeError with ``timed_out`` after ``head_seconds``."""
        wanted = {"Accept": "text/event-stream", "Cache-Control": "no-cache",
                  "User-Agent": USER_AGENT,
                  # as browsers send it: a proxy that compresses the stream shows it here
                  "Accept-Encoding": "gzip, deflate, br", **(headers or {})}
        connection = self._connect(head_seconds)
        try:
            connection.request("GET", self._path(f"/streams?{urlencode(query)}"),
                               headers=wanted)
            return Stream(connection, connection.getresponse())
        except (OSError, http.client.HTTPException) as error:
            connection.close()
            raise self._failed(error) from None

    def negotiated_protocol(self) -> str | None:
        """The protocol the TLS handshake settles on when offered ``h2`` and ``http/1.1``,
        as a browser offers them (ALPN), or None when the server takes part in no ALPN."""
        context = self._tls_context(["h2", "http/1.1"])
        try:
            with socket.create_connection((self.host, self.port), CONNECT_TIMEOUT_SECONDS) as raw, \
                    context.wrap_socket(raw, server_hostname=self.host) as tls:
                return tls.selected_alpn_protocol()
        except (OSError, ssl.SSLError) as error:
            raise self._failed(error) from None

    def _whole(self, method: str, path: str, body: bytes | None,
               headers: dict[str, str]) -> Answer:
        connection = self._connect()
        try:
            connection.request(method, self._path(path), body=body, headers=headers)
            response = connection.getresponse()
            data = response.read(MAX_BODY_BYTES)
            found = {name.lower(): value for name, value in response.getheaders()}
            return Answer(response.status, found, data)
        except (OSError, http.client.HTTPException) as error:
            raise self._failed(error) from None
        finally:
            connection.close()

    def _tls_context(self, protocols: list[str]) -> ssl.SSLContext:
        """The system's trust store (or ``--cacert``'s CA) and hostname checks, as a browser."""
        try:
            context = ssl.create_default_context(cafile=self._cafile)
        except (OSError, ssl.SSLError) as error:
            raise ValueError(f"cannot read the CA file {self._cafile}: {error}.") from None
        context.set_alpn_protocols(protocols)
        return context

    def _connect(self, seconds: float = CONNECT_TIMEOUT_SECONDS) -> http.client.HTTPConnection:
        if self._context is not None:
            return http.client.HTTPSConnection(self.host, self.port, context=self._context,
                                               timeout=seconds)
        return http.client.HTTPConnection(self.host, self.port, timeout=seconds)

    def _path(self, path: str) -> str:
        return f"{self.prefix}{path}"

    def _failed(self, error: BaseException) -> ProbeError:
        if isinstance(error, ssl.SSLCertVerificationError):
            reason = f"its TLS certificate is not trusted ({error.verify_message}; pass --cacert)"
        elif isinstance(error, OSError) and error.strerror:
            reason = error.strerror
        else:
            reason = str(error) or type(error).__name__
        return ProbeError(f"{self.origin} did not answer: {reason}.",
                          timed_out=isinstance(error, TimeoutError))
