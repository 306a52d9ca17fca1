"""Doctor: what a browser meets on the way to the stream pool, checked one verdict at a time.

A deployment can pass every test of its own and still fail in front of users: a proxy that
buffers the stream (events arrive in bursts, or when the connection closes), an idle timeout
shorter than the heartbeat (streams cut and reopened for ever), a proxy that drops
``Last-Event-ID`` (reconnects miss events), HTTP/1.1 at the edge (six streams per origin), a
missing CORS origin, or a 502 instead of the retry fallback (EventSource gives up for good).
Each check goes through the real proxy chain with a real token and real events on one channel
(``eventgate-doctor`` unless told), and its verdict names what to change. ``eventgate doctor``
(eventgate/cli.py) prints them.

The checks publish two events per run on that channel and hold a token for it; neither the
token nor the publisher key ever appears in a verdict.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass

from eventgate.probe import ProbeError, Site, Stream

OK, FAIL, WARN, SKIP = "ok", "FAIL", "warn", "skip"
DEFAULT_CHANNEL = "eventgate-doctor"
DEFAULT_IDLE_SECONDS = 70.0
DEFAULT_WAIT_SECONDS = 5.0
#: An event later than this from publish to arrival was held back on the way.
PROMPT_SECONDS = 1.0
EVENT_TYPE = "doctor"

HTTP_VERSION = "HTTP version"
POOL_HEALTH = "stream pool health"
EVENTS = "events arrive unbuffered"
LAST_EVENT_ID = "Last-Event-ID reaches the pool"
HEARTBEATS = "heartbeats keep idle streams open"
FALLBACK = "retry fallback when the pool is down"

BUFFERING_FIX = (
    "set `proxy_buffering off;` (and `gzip off;`) in nginx's /streams location, and let no "
    "proxy in front buffer responses or ignore the stream's `X-Accel-Buffering: no`"
)
HELD_BACK = "not checked: the stream is held back on the way (see above)"
FALLBACK_FIX = (
    "add `error_page 502 503 504 = @stream_unavailable;` to the /streams location, with "
    '`location @stream_unavailable { default_type text/event-stream; return 200 "retry: '
    '2000\\n\\n"; }` (eventgate\'s nginx template has both, and jitters that delay)'
)


@dataclass(frozen=True)
class Verdict:
    """One check's outcome: ``status`` is ok, FAIL, warn (works, with a cost worth knowing) or
    skip (not checked, and why); ``detail`` is a sentence, for a FAIL one that says what to
    change."""

    status: str
    check: str
    detail: str

    def line(self) -> str:
        return f"{self.status:<4} {self.check}: {self.detail}"


@dataclass(frozen=True)
class Options:
    """What to check with: the publisher key (mints the token, publishes the probes), the
    channel, the page origin for CORS, how long the idle check lasts, how long an event may
    take before it counts as lost, and whether the operator stopped the stream pool."""

    publish_key: str
    channel: str = DEFAULT_CHANNEL
    origin: str | None = None
    idle_seconds: float = DEFAULT_IDLE_SECONDS
    wait_seconds: float = DEFAULT_WAIT_SECONDS
    pool_down: bool = False


@dataclass(frozen=True)
class _Probe:
    """The events of the delivery check: ``start_id`` published before the stream opened,
    then the probe, its data carrying ``nonce``; ``prompt`` when it arrived in time."""

    start_id: str
    nonce: str
    prompt: bool


class _Stop(Exception):
    """A failure after which no later check can run (the site or the key)."""

    def __init__(self, verdict: Verdict) -> None:
        super().__init__(verdict.detail)
        self.verdict = verdict


class Doctor:
    """Runs the checks against ``site`` in order, quick ones first, the idle check last."""

    def __init__(self, site: Site, options: Options) -> None:
        self.site = site
        self.options = options
        #: Set once the delivery check found the stream held back: the stream checks after it
        #: would only time out again, so they say they were not checked.
        self._held_back = False

    def run(self) -> Iterator[Verdict]:
        """Every verdict, each as soon as its check ends; after a failure no later check can
        run past (the site, the key, a stream that does not open), a skip for each of them."""
        reported: set[str] = set()
        try:
            for verdict in self._verdicts():
                reported.add(verdict.check)
                yield verdict
        except _Stop as stop:
            yield stop.verdict
            reported.add(stop.verdict.check)
            for check in self._plan():
                if check not in reported:
                    yield Verdict(SKIP, check, "not checked: see the FAIL above")

    def _plan(self) -> list[str]:
        """The checks' names, in the order they run."""
        cors = f"CORS for {self.options.origin}" if self.options.origin else "CORS"
        if self.options.pool_down:
            return [HTTP_VERSION, POOL_HEALTH, cors, FALLBACK]
        return [HTTP_VERSION, POOL_HEALTH, EVENTS, cors, LAST_EVENT_ID, HEARTBEATS, FALLBACK]

    def _verdicts(self) -> Iterator[Verdict]:
        yield self.http_version()
        yield self.pool_health()
        token = self._token()
        if self.options.pool_down:
            yield self.cors(token)
            yield self.retry_fallback(token)
            return
        verdict, probe = self.delivery(token)
        yield verdict
        yield self.cors(token)
        yield self.last_event_id(token, probe)
        yield self.heartbeats(token)
        yield Verdict(SKIP, FALLBACK, "not exercised while the pool is up: stop the stream "
                                      "pool, then run `eventgate doctor --pool-down URL`")

    # -- the checks -----------------------------------------------------------------------------

    def http_version(self) -> Verdict:
        check = HTTP_VERSION
        if not self.site.tls:
            return Verdict(WARN, check,
                           "HTTP/1.1 (plain http://): a browser holds at most six connections "
                           "per origin, so a seventh tab's stream waits; serve the site over "
                           "https:// with HTTP/2 (`listen 443 ssl http2;`)")
        try:
            chosen = self.site.negotiated_protocol()
        except ProbeError as error:
            raise _Stop(Verdict(FAIL, "reach the site", error.message)) from None
        if chosen == "h2":
            return Verdict(OK, check, "HTTP/2 (the TLS handshake chose h2): every tab's stream "
                                      "shares one connection")
        return Verdict(WARN, check,
                       f"HTTP/1.1 (the TLS handshake chose {chosen or 'no protocol'}, not h2): "
                       "a browser holds at most six streams per origin; add http2 to the TLS "
                       "listen line (`listen 443 ssl http2;`)")

    def pool_health(self) -> Verdict:
        check = POOL_HEALTH
        try:
            answer = self.site.get("/streams/healthz")
        except ProbeError as error:
            raise _Stop(Verdict(FAIL, "reach the site", error.message)) from None
        if self.options.pool_down:
            if answer.status == 200:
                raise _Stop(Verdict(FAIL, check,
                                    "/streams/healthz answers 200, so the pool is up: "
                                    "--pool-down checks the fallback only once it is stopped"))
            return Verdict(OK, check, f"/streams/healthz answers {answer.status}: the pool is "
                                      "down, as --pool-down says, and health tells the truth")
        if answer.status != 200:
            return Verdict(FAIL, check,
                           f"/streams/healthz answers {answer.status} ({answer.message()}): the "
                           "stream pool does not answer behind the proxy — is it running, and "
                           "does the /streams location proxy to it?")
        return Verdict(OK, check, "/streams/healthz answers 200 through the proxy")

    def cors(self, token: str) -> Verdict:
        origin = self.options.origin
        if origin is None:
            return Verdict(SKIP, "CORS", "no --origin given: pass the page's origin "
                                         "(--origin https://app.example.com) to check it")
        check = f"CORS for {origin}"
        if self._held_back:
            return Verdict(SKIP, check, HELD_BACK)
        with self._stream(check, token, {"Origin": origin}) as stream:
            allowed = stream.headers.get("access-control-allow-origin")
            credentials = stream.headers.get("access-control-allow-credentials")
        fix = ("add the origin to EVENTGATE_CORS_ORIGINS (the development stack renders it "
               "into nginx too; production: `--cors-origin` when rendering)")
        if allowed is None:
            return Verdict(FAIL, check, "the stream answer carries no "
                                        f"Access-Control-Allow-Origin, so a page there cannot "
                                        f"open it: {fix}")
        if allowed != origin:
            return Verdict(FAIL, check, f"the stream answer allows {allowed!r}, not this origin: "
                                        f"{fix}")
        with_credentials = " with credentials" if credentials == "true" else ""
        return Verdict(OK, check, f"the stream answer allows it{with_credentials}")

    def delivery(self, token: str) -> tuple[Verdict, _Probe]:
        """Publish → arrival through the proxy chain. The stream resumes after an event
        published first (``lastEventId`` in the query, which no proxy drops), so the probe
        reaches it whether the pool takes it live or from the log: only the way back can delay
        it."""
        check = EVENTS
        start_id = self._publish("start")
        query = [("lastEventId", start_id)]
        wait = self.options.wait_seconds
        try:
            stream = self._stream(check, token, query=query, head_seconds=wait)
        except ProbeError:  # its head held back with the first events, as nginx's buffering does
            self._held_back = True
            return Verdict(FAIL, check, f"the stream's answer did not even begin in {wait:g} s: "
                                        f"a proxy on the way holds it back — {BUFFERING_FIX}"), \
                _Probe(start_id, "", prompt=False)
        with stream:
            sent = time.monotonic()
            nonce = secrets.token_hex(8)
            self._publish(nonce)
            arrived = _await(stream, nonce, sent + wait)
            lasted = time.monotonic() - stream.opened_at
            closed = stream.closed
        probe = _Probe(start_id, nonce, prompt=False)
        if arrived is None and closed:
            return Verdict(FAIL, check, f"the stream ended {lasted:.1f} s after it opened, "
                                        "before the event arrived: something on the way cuts "
                                        "streams (a read timeout far too short?), or the pool "
                                        "ended it (see its log)"), probe
        if arrived is None:
            self._held_back = True
            return Verdict(FAIL, check, f"an event published {wait:g} s ago has not arrived: a "
                                        f"proxy on the way holds the stream back — "
                                        f"{BUFFERING_FIX}"), probe
        took = arrived - sent
        if took > PROMPT_SECONDS:
            return Verdict(FAIL, check, f"an event took {took:.1f} s from publish to arrival: "
                                        f"a proxy on the way holds the stream back — "
                                        f"{BUFFERING_FIX}"), probe
        return (Verdict(OK, check, f"{took * 1000:.0f} ms from publish to arrival"),
                _Probe(start_id, nonce, prompt=True))

    def last_event_id(self, token: str, probe: _Probe) -> Verdict:
        """Reconnect as EventSource does, the cursor in the ``Last-Event-ID`` header only: the
        pool then replays the probe. Without the header it starts at the log's end, and says so
        at once with its opening cursor."""
        check = LAST_EVENT_ID
        if not probe.prompt:
            return Verdict(SKIP, check, "not checked: events do not arrive promptly (see above)")
        with self._stream(check, token, {"Last-Event-ID": probe.start_id}) as stream:
            deadline = time.monotonic() + self.options.wait_seconds
            while (frame := stream.next_frame(deadline)) is not None:
                if frame.data is not None and probe.nonce in frame.data:
                    return Verdict(OK, check, "a reconnect with Last-Event-ID got the event it "
                                              "had missed")
                if frame.id is not None and frame.data is None and frame.id != probe.start_id:
                    break  # the opening cursor: the pool started elsewhere than asked
        return Verdict(FAIL, check,
                       "a reconnect with the Last-Event-ID header was not resumed there, so "
                       "browsers miss what was published while they reconnect: a proxy drops "
                       "the header. nginx passes it unless told otherwise: remove "
                       '`proxy_set_header Last-Event-ID "";` (or `proxy_pass_request_headers '
                       "off;`) from the /streams location, or add `proxy_set_header "
                       "Last-Event-ID $http_last_event_id;`, and let any proxy in front pass it")

    def heartbeats(self, token: str) -> Verdict:
        """Stay connected with no events for ``idle_seconds`` and watch the comments."""
        check = HEARTBEATS
        if self._held_back:
            return Verdict(SKIP, check, HELD_BACK)
        idle = self.options.idle_seconds
        comments: list[float] = []
        with self._stream(check, token) as stream:
            end = stream.opened_at + idle
            while (frame := stream.next_frame(end)) is not None:
                if frame.comment is not None:
                    comments.append(frame.at)
            lasted = time.monotonic() - stream.opened_at
            closed = stream.closed
        marks = [0.0] + [at - stream.opened_at for at in comments]
        gaps = [later - earlier for earlier, later in zip(marks, marks[1:], strict=False)]
        raise_timeout = ("raise nginx's `proxy_read_timeout` in the /streams location (and any "
                         "load balancer's idle timeout) well above EVENTGATE_HEARTBEAT (default "
                         "15 s), or lower EVENTGATE_HEARTBEAT below the shortest of them")
        if closed and not comments:
            return Verdict(FAIL, check,
                           f"the stream was closed after {lasted:.1f} s with no event, before "
                           "any heartbeat: an idle (read) timeout on the way is shorter than "
                           f"the heartbeat — {raise_timeout}")
        if closed:
            return Verdict(FAIL, check,
                           f"the stream was closed after {lasted:.1f} s, "
                           f"{lasted - marks[-1]:.1f} s after its last heartbeat (they came "
                           f"every {max(gaps):.1f} s at most): a timeout on the way is shorter "
                           "than the heartbeat, or limits a response's whole duration — "
                           f"{raise_timeout}")
        if not comments:
            return Verdict(WARN, check,
                           f"the stream stayed open {idle:g} s but no heartbeat comment came: "
                           "--idle-seconds is shorter than EVENTGATE_HEARTBEAT (raise it), or a "
                           "proxy holds comments back")
        count = f"{len(comments)} heartbeat comment{'s' if len(comments) > 1 else ''}"
        return Verdict(OK, check, f"idle {idle:g} s and still open: {count}, at most "
                                  f"{max(gaps):.1f} s apart")

    def retry_fallback(self, token: str) -> Verdict:
        """With the pool stopped, a stream request must still answer 200 with a ``retry:``."""
        check = FALLBACK
        try:
            stream = self.site.open_stream(self._query(token))
        except ProbeError as error:
            raise _Stop(Verdict(FAIL, check, error.message)) from None
        with stream:
            body = stream.body_until(time.monotonic() + self.options.wait_seconds)
        if stream.status != 200:
            return Verdict(FAIL, check,
                           f"with the pool down /streams answers {stream.status}, and "
                           f"EventSource never retries after a non-200 answer: {FALLBACK_FIX}")
        if not body.startswith(b"retry:"):
            return Verdict(FAIL, check, "with the pool down /streams answers 200 without a "
                                        f"`retry:` line first: {FALLBACK_FIX}")
        first = body.split(b"\n", 1)[0].decode("ascii", "replace")
        return Verdict(OK, check, f"with the pool down /streams answers 200 `{first}`, so "
                                  "browsers come back once it is up")

    # -- requests -------------------------------------------------------------------------------

    def _token(self) -> str:
        body = {"channels": [self.options.channel], "subject": "eventgate-doctor",
                "ttl": int(self.options.idle_seconds + 4 * self.options.wait_seconds + 120)}
        answer = self._post("/api/tokens", body, "get a stream token")
        token = answer.json().get("token")
        if answer.status != 201 or not isinstance(token, str):
            raise _Stop(Verdict(FAIL, "get a stream token", _refusal("POST /api/tokens", answer)))
        return token

    def _publish(self, label: str) -> str:
        body = {"channel": self.options.channel, "type": EVENT_TYPE, "data": {"probe": label}}
        answer = self._post("/api/events", body, "publish")
        event_id = answer.json().get("id")
        if answer.status != 201 or not isinstance(event_id, str):
            raise _Stop(Verdict(FAIL, "publish", _refusal("POST /api/events", answer)))
        return event_id

    def _post(self, path: str, body: object, check: str):  # noqa: ANN202 (an Answer)
        try:
            return self.site.post_json(path, body, self.options.publish_key)
        except ProbeError as error:
            raise _Stop(Verdict(FAIL, check, error.message)) from None

    def _query(self, token: str) -> list[tuple[str, str]]:
        return [("token", token), ("channel", self.options.channel)]

    def _stream(self, check: str, token: str, headers: dict[str, str] | None = None,
                query: list[tuple[str, str]] = (), head_seconds: float | None = None) -> Stream:
        """An open stream answering 200 ``text/event-stream`` uncompressed; anything else ends
        the run with the check's FAIL. With ``head_seconds``, a head that takes longer raises
        the ProbeError (the caller's verdict)."""
        try:
            stream = self.site.open_stream([*self._query(token), *query], headers,
                                           head_seconds or self.options.wait_seconds)
        except ProbeError as error:
            if head_seconds is not None and error.timed_out:
                raise
            raise _Stop(Verdict(FAIL, check, error.message)) from None
        problem = _stream_problem(stream)
        if problem is not None:
            stream.close()
            raise _Stop(Verdict(FAIL, check, problem))
        return stream


def _await(stream: Stream, nonce: str, deadline: float) -> float | None:
    """When the event whose data carries ``nonce`` arrived, or None."""
    while (frame := stream.next_frame(deadline)) is not None:
        if frame.data is not None and nonce in frame.data:
            return frame.at
    return None


def _stream_problem(stream: Stream) -> str | None:
    if stream.status != 200:
        body = stream.body_until(time.monotonic() + 2.0)[:200].decode("utf-8", "replace")
        return (f"GET /streams answered {stream.status} ({body.strip() or 'no body'}): is the "
                "URL the site's root, with the stream pool behind /streams?")
    kind = stream.headers.get("content-type", "")
    if not kind.startswith("text/event-stream"):
        return (f"GET /streams answered {kind or 'no Content-Type'}, not text/event-stream: "
                "is the URL the site's root, with the stream pool behind /streams?")
    encoding = stream.headers.get("content-encoding")
    if encoding:
        return (f"the stream arrives compressed ({encoding}), which holds events back: set "
                "`gzip off;` in the /streams location and let no proxy in front compress "
                "text/event-stream")
    return None


def _refusal(request: str, answer) -> str:  # noqa: ANN001 (an Answer)
    """A sentence for a refused publisher request: what the site said and what to do."""
    if answer.status in (401, 403):
        return (f"{request} answered {answer.status} ({answer.message()}): pass the "
                "deployment's publisher key with --publish-key or EVENTGATE_PUBLISH_KEY, one "
                "allowed to publish on the channel (--channel)")
    return (f"{request} answered {answer.status} ({answer.message()}): is the URL the site's "
            "root, with the web pool behind /api?")
