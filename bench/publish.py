"""The benchmark's paced publisher: events at a set rate, stamped with their publish time.

Run by bench/run.py as a child process (pinned to the load core) and driven through stdin, one
JSON command per line, one JSON answer per line:

    {"cmd": "pace", "rate": 2000, "seconds": 3, "pick": "random"}   -> {"published": n, ...}
    {"cmd": "flood", "seconds": 5, "batch": 100, "threads": 2, "keepalive": true}
                                                                     -> {"published": n, ...}

Every event's data is ``{"ts": <CLOCK_REALTIME µs>, "s": <sequence number on its channel>, "p":
padding}``, 100 bytes of JSON, so the load generator measures publish→receive latency and checks
that each connection sees every number once. Targets:

- ``publisher``: eventgate's Python Publisher (``publish_many``: one Lua round trip per batch; a
  ``redis+cluster://`` URL: one per partition of the batch, SPUBLISH);
- ``http``: ``POST /api/events`` on a web gunicorn (single events, or batches as JSON arrays);
- ``flask-sse``: what ``flask_sse.sse.publish`` does, a plain PUBLISH of its JSON message;
- ``nchan``: ``POST /pub?channel=…`` to nchan's publisher location, a request per event (nchan
  has no batches), each tick's requests pipelined on one kept-alive connection.

``flood`` with any target but ``http`` publishes batches back to back from one thread.
"""

from __future__ import annotations

import argparse
import json
import random
import socket
import sys
import threading
import time

import redis

DATA_BYTES = 100
EVENT_TYPE = "m"


class Events:
    """Per-channel sequence numbers and 100-byte data stamped at the moment of publishing."""

    def __init__(self, channels: list[str]) -> None:
        self.channels = channels
        self.seq = dict.fromkeys(channels, 0)
        self._pad = {}

    def data(self, channel: str) -> str:
        self.seq[channel] += 1
        head = f'{{"ts":{time.time_ns() // 1000},"s":{self.seq[channel]},"p":"'
        fill = DATA_BYTES - len(head) - 2
        pad = self._pad.get(fill)
        if pad is None:
            pad = self._pad[fill] = "x" * max(fill, 0)
        return head + pad + '"}'

    def pick(self, how: str, count: int) -> list[str]:
        if how == "first":
            return [self.channels[0]] * count
        if how == "all":
            return list(self.channels)
        return random.choices(self.channels, k=count)


class ViaPublisher:
    def __init__(self, redis_url: str) -> None:
        from eventgate.shared.config import Config
        from eventgate.shared.publisher import Draft, Publisher
        from eventgate.shared.redisconn import connect

        config = Config(secret_keys=("bench",), publish_keys=("bench",), redis_url=redis_url)
        self._publisher = Publisher(connect(config), config)
        self._draft = Draft

    def send(self, batch: list[tuple[str, str]]) -> None:
        # Channel names are the benchmark's own, already valid: skip re-validating them here.
        self._publisher.publish_many(self._draft(ch, EVENT_TYPE, data) for ch, data in batch)


class ViaFlaskSse:
    def __init__(self, redis_url: str) -> None:
        self._redis = redis.Redis.from_url(redis_url)

    def send(self, batch: list[tuple[str, str]]) -> None:
        pipe = self._redis.pipeline(transaction=False)
        for channel, data in batch:
            seq = data[data.index('"s":') + 4 : data.index(',"p"')]
            pipe.publish(channel, json.dumps({"data": data, "type": EVENT_TYPE, "id": seq}))
        pipe.execute()


class ViaHttp:
    """POST /api/events from raw sockets. ``keepalive``: each client thread keeps one connection
    and sends request after request on it, as nginx does with its upstream keep-alive pool
    (deploy/nginx: ``keepalive``, HTTP/1.1, ``Connection: ""``); else one connection per request,
    closed after the answer."""

    def __init__(self, port: int, publish_key: str) -> None:
        self.port = port
        self.key = publish_key
        self.failures = 0
        self._local = threading.local()

    def request(self, body: bytes, keepalive: bool = False) -> bytes:
        close = "" if keepalive else "Connection: close\r\n"
        return (
            f"POST /api/events HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {self.key}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n{close}\r\n"
        ).encode("ascii") + body

    def post(self, payload: bytes, keepalive: bool = False) -> bool:
        answer = self._exchange(payload) if keepalive else self._once(payload)
        ok = answer.startswith(b"HTTP/1.1 201")
        if not ok:
            self.failures += 1
        return ok

    def _once(self, payload: bytes) -> bytes:
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as sock:
            sock.sendall(self.request(payload))
            # Half-close at once, as nginx in front of the web tier effectively does: gunicorn
            # (>= 25) lingers after each answer until the client's FIN, and a Python client's
            # wake-up would otherwise be measured instead of the web worker.
            sock.shutdown(socket.SHUT_WR)
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        return answer

    def _exchange(self, payload: bytes) -> bytes:
        """One request and its answer on this thread's kept-alive connection (opened on first
        use, and again after the server closed it)."""
        sock = getattr(self._local, "sock", None)
        if sock is None:
            sock = self._local.sock = socket.create_connection(("127.0.0.1", self.port), 10)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            sock.sendall(self.request(payload, keepalive=True))
            answer = b""
            while b"\r\n\r\n" not in answer:
                chunk = sock.recv(65536)
                if not chunk:
                    raise ConnectionError("the server closed the connection")
                answer += chunk
            head, _, body = answer.partition(b"\r\n\r\n")
            fields = dict(
                line.split(b":", 1) for line in head.split(b"\r\n")[1:] if b":" in line
            )
            fields = {k.strip().lower(): v.strip() for k, v in fields.items()}
            length = int(fields.get(b"content-length", b"0"))
            while len(body) < length:
                chunk = sock.recv(65536)
                if not chunk:
                    raise ConnectionError("the server closed the connection mid-answer")
                body += chunk
            if fields.get(b"connection", b"").lower() == b"close":
                self.close()
            return head
        except OSError:
            self.close()
            return b""

    def close(self) -> None:
        sock = getattr(self._local, "sock", None)
        if sock is not None:
            self._local.sock = None
            sock.close()

    def send(self, batch: list[tuple[str, str]], keepalive: bool = False) -> None:
        if len(batch) == 1:
            channel, data = batch[0]
            body = f'{{"channel":"{channel}","type":"{EVENT_TYPE}","data":{data}}}'
        else:
            body = "[" + ",".join(
                f'{{"channel":"{ch}","type":"{EVENT_TYPE}","data":{data}}}' for ch, data in batch
            ) + "]"
        self.post(body.encode(), keepalive)


class ViaNchan:
    """nchan's publisher location over HTTP/1.1: a tick's events are pipelined requests on one
    kept-alive connection (reopened after the server closed it: a killed nginx worker)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.sock: socket.socket | None = None
        self.pending = b""

    def send(self, batch: list[tuple[str, str]]) -> None:
        requests = b"".join(
            (f"POST /pub?channel={ch} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
             f"Content-Type: text/plain\r\nContent-Length: {len(data)}\r\n\r\n{data}"
             ).encode() for ch, data in batch)
        for attempt in range(2):
            try:
                self._exchange(requests, len(batch))
                return
            except OSError:
                self.close()
                if attempt:
                    raise

    def _exchange(self, requests: bytes, count: int) -> None:
        if self.sock is None:
            self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.pending = b""
        self.sock.sendall(requests)
        buf = self.pending
        for _ in range(count):
            while b"\r\n\r\n" not in buf:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise ConnectionError("nchan closed the connection")
                buf += chunk
            head, _, buf = buf.partition(b"\r\n\r\n")
            if not head.startswith((b"HTTP/1.1 201", b"HTTP/1.1 202")):
                raise RuntimeError(f"nchan refused an event: {head.splitlines()[0]!r}")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            while len(buf) < length:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise ConnectionError("nchan closed the connection mid-answer")
                buf += chunk
            buf = buf[length:]
        self.pending = buf

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def pace(target, events: Events, rate: float, seconds: float, pick: str, batch_max: int) -> dict:
    """Publish ``rate`` events/s for ``seconds``; each tick sends what is due in one batch."""
    total = max(1, int(rate * seconds)) if pick != "all" else len(events.channels)
    sent = 0
    start = time.perf_counter()
    max_lag = 0.0
    while sent < total:
        elapsed = time.perf_counter() - start
        due = total if pick == "all" else min(total, int(rate * elapsed) + 1)
        count = min(due - sent, batch_max)
        if count <= 0:
            time.sleep(max(0.0, sent / rate - elapsed))
            continue
        if pick != "all":
            max_lag = max(max_lag, elapsed - sent / rate)
        chosen = events.pick(pick, count) if pick != "all" else events.channels[sent:sent + count]
        target.send([(ch, events.data(ch)) for ch in chosen])
        sent += count
    elapsed = time.perf_counter() - start
    return {"published": sent, "seconds": round(elapsed, 3), "max_lag_ms": round(max_lag * 1e3, 2)}


def flood(http: ViaHttp, events: Events, seconds: float, batch: int, threads: int,
          keepalive: bool = False) -> dict:
    """Unpaced: ``threads`` clients POST as fast as the web worker answers, for ``seconds``;
    with ``keepalive`` each on one kept-alive connection, else a connection per request."""
    counts = [0] * threads
    deadline = time.perf_counter() + seconds
    lock = threading.Lock()
    failures = http.failures

    def client(index: int) -> None:
        while time.perf_counter() < deadline:
            with lock:
                chosen = events.pick("random", batch)
                items = [(ch, events.data(ch)) for ch in chosen]
            http.send(items, keepalive)
            counts[index] += len(items)
        http.close()

    start = time.perf_counter()
    workers = [threading.Thread(target=client, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - start
    return {"published": sum(counts), "seconds": round(elapsed, 3),
            "failures": http.failures - failures}


def burst(target, events: Events, seconds: float, batch: int) -> dict:  # noqa: ANN001
    """Unpaced, one thread: batches of ``batch`` random channels back to back for ``seconds``."""
    published = 0
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        chosen = events.pick("random", batch)
        target.send([(ch, events.data(ch)) for ch in chosen])
        published += batch
    return {"published": published, "seconds": round(time.perf_counter() - start, 3),
            "failures": 0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", required=True,
                        choices=("publisher", "http", "flask-sse", "nchan"))
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--http-port", type=int, default=0)
    parser.add_argument("--publish-key", default="")
    parser.add_argument("--channels", required=True, help="file: one channel name per line")
    parser.add_argument("--batch-max", type=int, default=200)
    args = parser.parse_args()
    with open(args.channels) as handle:
        events = Events([line.strip() for line in handle if line.strip()])
    if args.target == "publisher":
        target = ViaPublisher(args.redis_url)
    elif args.target == "flask-sse":
        target = ViaFlaskSse(args.redis_url)
    elif args.target == "nchan":
        target = ViaNchan(args.http_port)
    else:
        target = ViaHttp(args.http_port, args.publish_key)
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        command = json.loads(line)
        try:
            if command["cmd"] == "pace":
                answer = pace(target, events, command.get("rate", 1.0), command.get("seconds", 1.0),
                              command.get("pick", "first"), args.batch_max)
            elif command["cmd"] == "flood" and not isinstance(target, ViaHttp):
                answer = burst(target, events, command["seconds"], command.get("batch", 1))
            elif command["cmd"] == "flood":
                answer = flood(target, events, command["seconds"], command.get("batch", 1),
                               command.get("threads", 2), command.get("keepalive", False))
            elif command["cmd"] == "seq":
                answer = {"seq": events.seq}
            else:
                answer = {"error": f"unknown command {command['cmd']!r}"}
        except Exception as error:  # noqa: BLE001 - reported to the driver, which decides
            answer = {"error": f"{type(error).__name__}: {error}"}
        print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    main()
