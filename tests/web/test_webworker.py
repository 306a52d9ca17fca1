"""web/worker.py under a real gunicorn: a busy kept-alive connection is served by the thread
that answered its last request, pipelined requests are all answered, and a connection whose
thread lingers never keeps another connection's request waiting for long."""

from __future__ import annotations

import http.client
import socket
import threading
import time

from tests.servers import LOOPBACK, Program, wait_for


def connection(server: Program) -> http.client.HTTPConnection:
    """A kept-alive connection to ``server`` (one of ``make_gunicorn``'s)."""
    return http.client.HTTPConnection(LOOPBACK, server.port, timeout=10)


def ask(conn: http.client.HTTPConnection, body: bytes = b"x" * 100) -> tuple[str, int]:
    """POST on ``conn`` (kept alive); returns (the answering thread's id, the body length seen)."""
    conn.request("POST", "/api/events", body=body, headers={"Content-Type": "application/json"})
    response = conn.getresponse()
    assert response.status == 200
    thread, length = response.read().decode().split()
    return thread, int(length)


def start_every_thread(server: Program, threads: int = 4) -> None:
    """Requests that hold a thread each for a moment, at once: the pool starts all its threads
    (a ThreadPoolExecutor starts one only when none is idle)."""

    def hold() -> None:
        conn = connection(server)
        conn.request("POST", "/", body=b"", headers={"X-Sleep": "0.3"})
        assert conn.getresponse().status == 200
        conn.close()

    holders = [threading.Thread(target=hold) for _ in range(threads)]
    for holder in holders:
        holder.start()
    for holder in holders:
        holder.join(15)


def thread_changes_on_a_busy_connection(server: Program, requests: int = 40) -> int:
    """How often the next request on one kept-alive connection, sent as soon as the last answer
    came, was answered by another thread than the last (every thread of the pool started)."""
    start_every_thread(server)
    conn = connection(server)
    threads = []
    for _ in range(requests):
        thread, length = ask(conn)
        assert length == 100
        threads.append(thread)
    conn.close()
    return sum(last != next_ for last, next_ in zip(threads, threads[1:], strict=False))


def test_a_busy_kept_alive_connection_stays_on_its_thread(make_gunicorn):
    # Measured: 0 of 39 (1 now and then, when the client was slower than the linger).
    assert thread_changes_on_a_busy_connection(make_gunicorn()) <= 5
    # gunicorn's own gthread hands each request back to its poller and on to a free thread (what
    # the WebWorker saves): measured 39 changes of 39, every thread started.
    assert thread_changes_on_a_busy_connection(make_gunicorn("gthread")) >= 15


def test_pipelined_requests_are_all_answered(make_gunicorn):
    server = make_gunicorn()
    one = (b"POST /api/events HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")
    last = (b"POST /api/events HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
            b"Connection: close\r\n\r\nabcde")
    with socket.create_connection((LOOPBACK, server.port), timeout=10) as sock:
        sock.sendall(one * 3 + last)  # four requests in one write: read ahead, not readable
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.count(b"HTTP/1.1 200 OK") == 4
    assert answer.endswith(b" 5") and answer.count(b" 3HTTP/1.1") == 3


def test_an_idle_connection_is_served_again_after_the_linger(make_gunicorn):
    server = make_gunicorn(threads=1)
    first, second = connection(server), connection(server)
    ask(first)
    time.sleep(0.05)  # on purpose: past the linger, back in gunicorn's poller, its thread free
    started = time.monotonic()
    ask(second)
    assert time.monotonic() - started < 0.5
    ask(first)


def test_a_lingering_thread_does_not_starve_other_connections(make_gunicorn):
    """One thread; connection A sends its next request as soon as each answer comes (well within
    the linger), for 3 seconds. B's requests meanwhile must not wait for A to stop: the thread
    gives A back to the poller as soon as another request waits for it."""
    server = make_gunicorn(threads=1)
    stop = threading.Event()
    busy_answers = []

    def keep_busy() -> None:
        conn = connection(server)
        while not stop.is_set():
            busy_answers.append(ask(conn))
        conn.close()

    busy = threading.Thread(target=keep_busy)
    busy.start()
    try:
        wait_for(lambda: len(busy_answers) > 20, 10, "the busy connection's first answers")
        other = connection(server)
        waits = []
        for _ in range(10):
            started = time.monotonic()
            ask(other)
            waits.append(time.monotonic() - started)
        still_busy = not stop.is_set() and busy.is_alive()
    finally:
        stop.set()
        busy.join(15)
    assert still_busy
    assert max(waits) < 0.5, waits
