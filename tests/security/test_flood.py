"""A flood that hits every limit at once while an existing stream keeps receiving on time.

On the deployed stack (one stream worker, tight limits), from several loopback addresses at the
same time: new-stream requests past nginx's rate, connections past nginx's per-address limit, one
subject's streams past its limit, streams past the worker's limit, a publish flood fanned out to
those streams, and slowloris clients. Meanwhile an observer from its own address receives a paced
event every 100 ms; each must arrive, in order, within a second of being published.
"""

from __future__ import annotations

import contextlib
import json
import select
import statistics
import threading
import time
from collections import Counter

import pytest

from tests.clients import StreamClient, connect, read_answer, request
from tests.servers import wait_for

SUBJECT_LIMIT, WORKER_LIMIT, CONNECTIONS, RATE, BURST = 5, 60, 40, 10, 20
FLOOD_SECONDS = 8.0
BATCH = 10
MAX_LATENCY_SECONDS = 1.0
pytestmark = pytest.mark.stack(stream_workers=1, web_workers=2, settings={
    "EVENTGATE_HEARTBEAT": "1",
    "EVENTGATE_MAX_STREAMS_PER_SUBJECT": str(SUBJECT_LIMIT),
    "EVENTGATE_MAX_STREAMS_PER_WORKER": str(WORKER_LIMIT),
    "EVENTGATE_CONNECTIONS_PER_ADDRESS": str(CONNECTIONS),
    "EVENTGATE_STREAM_CONNECT_RATE": str(RATE),
    "EVENTGATE_STREAM_CONNECT_BURST": str(BURST),
    "EVENTGATE_CLIENT_HEADER_TIMEOUT": "2",
    # The flood's own streams may fall behind on this small machine: they must stay open (and
    # counted against the worker's limit) rather than be dropped as slow consumers.
    "EVENTGATE_MAX_QUEUE_BYTES": str(64 << 20),
    "EVENTGATE_MAX_QUEUE_FRAMES": "1000000",
})


class Tally:
    """Thread-safe counts of ``(status, error code)`` per actor (a 200's code: what the caller
    calls it), and anything unexpected: through nginx, even a full worker's 503 is one (nginx
    answers a browser's stream with its retry fallback then)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counts: dict[str, Counter] = {}
        self.bad: list[str] = []

    def add(self, actor: str, status: int, body: bytes = b"", json_ok: bool = True,
            code: str = "") -> None:
        if status >= 400:
            try:
                payload = json.loads(body)
                code = payload["error"]
                assert payload["message"]
            except (ValueError, KeyError, AssertionError):
                if json_ok:
                    self.bad.append(f"{actor}: {status} not JSON: {body[:120]!r}")
        if status >= 500:
            self.bad.append(f"{actor}: {status} {code}")
        with self.lock:
            self.counts.setdefault(actor, Counter())[(status, code)] += 1


def test_flood_hits_every_limit_while_a_stream_stays_on_time(stack, stack_tokens, unique):
    tokens = stack_tokens
    watch, noise = f"flood.{unique}.watch", f"flood.{unique}.noise"
    stop = threading.Event()
    tally = Tally()
    held: list[StreamClient] = []

    # The observer's events are parsed and timestamped on arrival; the flood's own streams are
    # only drained (parsing thousands of events a second here would starve the observer's thread
    # and skew its clock).
    observer = StreamClient(stack.port, f"/streams?token={tokens.issue([watch])[0]}",
                            source="127.0.0.2").start()
    assert observer.status == 200
    sent: list[float] = []

    def pace() -> None:  # the observed channel: one event every 100 ms, from its own address
        n = 0
        while not stop.is_set():
            at = time.time()
            status, _, body = stack.post("/api/events", {"channel": watch,
                                         "data": {"n": n, "at": at}}, source="127.0.0.2")
            assert status == 201, body
            sent.append(at)
            n += 1
            stop.wait(max(0.0, at + 0.1 - time.time()))

    def connect_storm(source: str) -> None:  # nginx limit_req: new streams per second
        token = tokens.issue([noise])[0]
        while not stop.is_set():
            answer = request(stack.port, "GET", f"/streams?token={token}", source=source)
            tally.add("connect storm", answer.status, answer.body)

    def held_connections() -> None:  # nginx limit_conn: half-sent bodies hold connections
        socks = []
        for _ in range(CONNECTIONS + 10):
            sock = connect(stack.port, "127.0.0.4")
            sock.sendall(b"POST /api/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                         b"\r\nContent-Length: 100\r\n\r\n{")
            socks.append(sock)
            time.sleep(0.02)  # on purpose: connections one after another, not one burst
        # nginx answers the refused ones (10 or more) at once; the others stay held. The count
        # is checked with the tally.
        with contextlib.suppress(AssertionError):
            wait_for(lambda: len(select.select(socks, [], [], 0)[0]) >= 10, 5,
                     "nginx's answers to the connections past its limit")
        for sock in socks:  # the refused ones were answered 429 at once; the others wait
            try:
                answer = read_answer(sock, 0.05)
                tally.add("held connections", answer.status, answer.body)
            except (TimeoutError, OSError):
                tally.add("held connections", 0)  # still held: nginx is reading its body
        stop.wait()
        for sock in socks:
            sock.close()

    def one_subject() -> None:  # per-subject limit across the worker
        for _ in range(SUBJECT_LIMIT + 3):
            token = tokens.issue([noise], subject=f"flooder-{unique}")[0]
            reader = StreamClient(stack.port, f"/streams?token={token}", source="127.0.0.5",
                                  drain=True).start()
            tally.add("one subject", reader.status, reader.body)
            if reader.status == 200:
                held.append(reader)
            time.sleep(0.15)  # on purpose: one new stream at a time

    def fill_worker(source: str) -> None:  # per-worker limit: streams that read the noise
        token = tokens.issue([noise])[0]
        stop.wait(1.5)  # after one_subject: a full worker refuses before any subject check
        for _ in range(8):
            reader = StreamClient(stack.port, f"/streams?token={token}", source=source,
                                  drain=True).start()
            # Past the worker's limit: nginx's retry fallback (a 200 of its own, with a length),
            # which an EventSource follows, never the worker's 503.
            fallback = reader.is_stream and "content-length" in reader.response_headers
            tally.add("fill worker", reader.status, reader.body,
                      code="retry fallback" if fallback else "")
            if reader.status == 200:
                held.append(reader)
            time.sleep(0.15)  # on purpose: one new stream at a time

    def publish_flood(source: str) -> None:  # batches fanned out to every noise stream
        batch = [{"channel": noise, "data": {"pad": "x" * 50}} for _ in range(BATCH)]
        while not stop.is_set():
            status, _, body = stack.post("/api/events", batch, source=source)
            tally.add("publish flood", status, body)

    def oversized() -> None:  # the body size limit (413) and the event size limit (400)
        huge = {"channel": noise, "data": "x" * (5 << 20)}
        large = {"channel": noise, "data": "x" * 70000}
        while not stop.is_set():
            for body in (huge, large):
                status, _, answer = stack.post("/api/events", body, source="127.0.0.8")
                tally.add("oversized", status, answer)
            stop.wait(0.5)

    def slowloris() -> None:  # headers that never end, cut by client_header_timeout
        socks = []
        for _ in range(60):
            sock = connect(stack.port, "127.0.0.7")
            sock.sendall(b"GET /streams HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            socks.append(sock)
        while not stop.is_set():
            for sock in list(socks):
                try:
                    sock.sendall(b"a")
                    sock.settimeout(0.001)
                    if sock.recv(1) == b"":
                        raise ConnectionResetError
                except TimeoutError:
                    continue
                except OSError:
                    socks.remove(sock)
                    sock.close()
                    tally.add("slowloris", 0, json_ok=False)
            stop.wait(0.3)
        for sock in socks:
            sock.close()

    actors = [threading.Thread(target=pace)]
    actors += [threading.Thread(target=connect_storm, args=("127.0.0.3",)) for _ in range(3)]
    actors += [threading.Thread(target=held_connections), threading.Thread(target=one_subject),
               threading.Thread(target=slowloris)]
    actors += [threading.Thread(target=fill_worker, args=(f"127.0.0.{10 + i}",)) for i in range(9)]
    actors += [threading.Thread(target=publish_flood, args=(f"127.0.0.{30 + i}",))
               for i in range(2)]
    actors.append(threading.Thread(target=oversized))
    for actor in actors:
        actor.daemon = True
        actor.start()
    time.sleep(FLOOD_SECONDS)  # on purpose: the flood's length
    stop.set()
    for actor in actors:
        actor.join(15)
    try:
        wait_for(lambda: len(observer.arrivals) >= len(sent), 5, "the last paced events")
        counts = {actor: dict(c) for actor, c in tally.counts.items()}
        assert not tally.bad, tally.bad

        # Every limit was hit...
        assert counts["connect storm"].get((429, "too_many_requests"), 0) > 0, counts
        assert counts["held connections"].get((429, "too_many_requests"), 0) >= 10, counts
        assert counts["one subject"] == {(200, ""): SUBJECT_LIMIT,
                                         (429, "too_many_streams"): 3}, counts
        assert counts["fill worker"].get((200, "retry fallback"), 0) > 0, counts
        assert (503, "server_busy") not in counts["fill worker"], counts
        assert counts["slowloris"][(0, "")] == 60, counts
        published = counts["publish flood"].get((201, ""), 0)
        assert published > 0, counts
        assert counts["oversized"].get((413, "content_too_large"), 0) > 0, counts
        assert counts["oversized"].get((400, "invalid_event"), 0) > 0, counts

        # ...and the observer received every paced event, in order, on time: from the moment
        # Redis stored it (its id is Redis's clock, in ms, on this same host) to its arrival.
        got = [json.loads(event.data) for _, event in observer.arrivals]
        assert [e["n"] for e in got] == list(range(len(sent))), got[-3:]
        delivery = [arrived - int(event.last_event_id.split("-")[0]) / 1000
                    for arrived, event in observer.arrivals]
        # For the record: from the paced publisher's POST to the arrival, through a web tier
        # that the publish flood keeps busy (publishers are trusted: no rate limit there).
        end_to_end = [arrived - data["at"] for (arrived, _), data in
                      zip(observer.arrivals, got, strict=True)]
        summary = (
            f"{len(sent)} paced events; delivery latency max {max(delivery) * 1000:.0f} ms, "
            f"median {statistics.median(delivery) * 1000:.0f} ms; POST-to-arrival max "
            f"{max(end_to_end) * 1000:.0f} ms, median {statistics.median(end_to_end) * 1000:.0f}"
            f" ms; {published * BATCH} noise events published; {counts}"
        )
        print(summary)
        assert max(delivery) < MAX_LATENCY_SECONDS, summary
        assert len(sent) >= 30, summary  # the observed channel really was published to
    finally:
        observer.close()
        for reader in held:
            reader.close()
