"""Micro-benchmarks behind the web tier's publish changes (docs/performance.md), in one process.

    .venv/bin/python bench/micro.py

Prints µs of this thread's CPU per operation, each measured in turn against what it replaced:
- the access-log line: gunicorn's ``Logger.access`` vs ``shared.pools.TextLogger``;
- parsing a publish request: gunicorn's Python parser vs its C parser (gunicorn_h1c), from a
  socket pair, body read;
- one EVALSHA publish and one PING: through the pooled client (a pool checkout per command) vs
  through the thread's kept connection (``shared.redisconn.ThreadClients``), on a real
  redis-server started here on a free loopback port;
- writing a publish's 201 answer on a loopback TCP connection: head and body in two sends (as
  gunicorn's ``Response.write`` does) vs one joined send — a change weighed and not made.
"""

from __future__ import annotations

import datetime
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from gunicorn.config import Config as GunicornConfig
from gunicorn.glogging import Logger
from gunicorn.http.parser import RequestParser

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eventgate.shared import keys  # noqa: E402
from eventgate.shared.config import Config  # noqa: E402
from eventgate.shared.pools import TextLogger  # noqa: E402
from eventgate.shared.publisher import Publisher  # noqa: E402
from eventgate.shared.redisconn import ThreadClients, connect  # noqa: E402

LOOPBACK = "127.0.0.1"
ROUNDS = 3


def per_call(fn: Callable[[], object], calls: int) -> float:
    for _ in range(calls // 20):
        fn()
    start = time.thread_time()
    for _ in range(calls):
        fn()
    return (time.thread_time() - start) / calls * 1e6


def show(label: str, before: Callable[[], object], after: Callable[[], object], calls: int) -> None:
    pairs = [(per_call(before, calls), per_call(after, calls)) for _ in range(ROUNDS)]
    text = ", ".join(f"{b:.1f} → {a:.1f}" for b, a in pairs)
    print(f"{label:48s} µs per call, {ROUNDS} rounds in turn: {text}")


def access_lines(workdir: Path) -> None:
    class Response:
        status, sent = "201 CREATED", 25
        headers = [("Content-Type", "application/json"), ("Content-Length", "25")]

    class Request:
        headers = [("HOST", "127.0.0.1:8000"), ("AUTHORIZATION", "Bearer x"),
                   ("CONTENT-TYPE", "application/json"), ("CONTENT-LENGTH", "100"),
                   ("X-REQUEST-ID", "0123456789abcdef")]

    environ = {f"wsgi.key{i}": i for i in range(12)} | {
        "REQUEST_METHOD": "POST", "RAW_URI": "/api/events", "PATH_INFO": "/api/events",
        "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": LOOPBACK, "QUERY_STRING": "",
        "HTTP_AUTHORIZATION": "Bearer x", "HTTP_X_REQUEST_ID": "0123456789abcdef",
        "CONTENT_TYPE": "application/json", "CONTENT_LENGTH": "100",
    }
    took = datetime.timedelta(microseconds=1234)
    loggers = []
    for cls in (Logger, TextLogger):
        cfg = GunicornConfig()
        cfg.set("accesslog", str(workdir / f"{cls.__name__}.log"))
        # The web program's format (deploy/supervisor/supervisord.conf.tmpl).
        cfg.set("access_log_format",
                '%(t)s %({x-request-id}i)s "%(m)s %(U)s %(H)s" %(s)s %(b)s %(M)sms')
        loggers.append(cls(cfg))
    show("access line: gunicorn's Logger → TextLogger",
         lambda: loggers[0].access(Response, Request, environ, took),
         lambda: loggers[1].access(Response, Request, environ, took), 20000)


def request_parse() -> None:
    request = (b"POST /api/events HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n"
               b"Authorization: Bearer abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG\r\n"
               b"Content-Type: application/json\r\nContent-Length: 100\r\n"
               b"X-Request-ID: 0123456789abcdef\r\nConnection: keep-alive\r\n\r\n" + b"x" * 100)
    ends = socket.socketpair()

    def parse(mode: str) -> Callable[[], object]:
        cfg = GunicornConfig()
        cfg.set("http_parser", mode)

        def once() -> None:
            ends[1].sendall(request)
            next(RequestParser(cfg, ends[0], (LOOPBACK, 1234))).body.read()

        return once

    show("parse a publish request: Python → C (h1c)", parse("python"), parse("fast"), 5000)


def response_sends() -> None:
    head = (b"HTTP/1.1 201 CREATED\r\nServer: gunicorn\r\n"
            b"Date: Tue, 01 Dec 2026 06:00:00 GMT\r\nConnection: keep-alive\r\n"
            b"Content-Type: application/json\r\nContent-Length: 25\r\n\r\n")
    body = b'{"id":"1764568800000-0"}\n'
    with socket.socket() as listener:
        listener.bind((LOOPBACK, 0))
        listener.listen()
        client = socket.create_connection(listener.getsockname())
        server, _ = listener.accept()
    for end in (client, server):
        end.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def drain() -> None:
        while client.recv(65536):
            pass

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()

    def two() -> None:
        server.sendall(head)
        server.sendall(body)

    show("201 answer: two sends → one", two, lambda: server.sendall(head + body), 20000)
    server.close()
    reader.join(10)
    client.close()


def redis_calls(workdir: Path) -> None:
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([shutil.which("redis-server") or "/usr/bin/redis-server",
                               "--port", str(port), "--bind", LOOPBACK, "--save", "",
                               "--dir", str(workdir)], stdout=subprocess.DEVNULL)
    try:
        config = Config(secret_keys=("s" * 32,), publish_keys=("p" * 32,),
                        redis_url=f"redis://{LOOPBACK}:{port}/0")
        client = connect(config)
        for _ in range(100):
            try:
                client.ping()
                break
            except Exception:  # noqa: BLE001 - still starting
                time.sleep(0.05)
        kept = ThreadClients(client).client()
        publisher = Publisher(client, config)
        drafts = [publisher.draft("bench.micro", {"ts": 1, "p": "x" * 80}, "m")]
        script = publisher._script  # the publish script itself, on either client
        names = [keys.log_key("bench.micro"), keys.live_channel("bench.micro")]
        args = [1000, 0, drafts[0].type, drafts[0].data]
        show("EVALSHA publish: pool checkout → kept connection",
             lambda: script(keys=names, args=args, client=client),
             lambda: script(keys=names, args=args, client=kept), 4000)
        show("PING: pool checkout → kept connection", client.ping, kept.ping, 4000)
    finally:
        server.terminate()
        server.wait(10)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        access_lines(workdir)
        request_parse()
        response_sends()
        redis_calls(workdir)


if __name__ == "__main__":
    main()
