"""``eventgate relay``: the outbox relay as a program of its own, under supervisord.

Web workers relay their own commits from a thread (shared/outbox.py); this program sweeps what
they left behind (a worker that crashed or restarted between its commit and its relay) and
rows that other writers (job workers) committed. It runs ``Outbox.loop`` in its main thread:
woken by PostgreSQL's NOTIFY at once, and sweeping every ``--sweep-seconds`` regardless (the
only wake-up on SQLite). Several may run against one database (shared/relay.py says why that is
safe).

Besides relaying it serves the outbox metrics (eventgate/outboxmetrics.py) on
``--metrics-port``, and writes a status record into Redis (``keys.RELAYS``) every
``status_interval_seconds`` for ``eventgate status``. While Redis is down it keeps trying (rows
wait; the record is not written); SIGTERM or SIGINT end it after its current round, exit
status 0.

Needs the ``outbox`` extra (SQLAlchemy) and the ``server`` extra (prometheus-client):
eventgate/cli.py imports this module only when ``relay`` runs.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import threading
import time
from dataclasses import dataclass

import redis
from prometheus_client import CollectorRegistry, start_http_server
from sqlalchemy import create_engine, make_url
from sqlalchemy.engine import Engine
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from eventgate.outboxmetrics import OutboxGauges
from eventgate.shared import keys, logformat
from eventgate.shared.config import Config, check_outbox_url
from eventgate.shared.errors import ConfigError, EventgateError
from eventgate.shared.outbox import Outbox
from eventgate.shared.publisher import Publisher
from eventgate.shared.relay import RelayLoop
from eventgate.shared.status import TTL_INTERVALS, remove_record, write_record

log = logging.getLogger("eventgate.relay")

EXIT_USAGE = 2
EXIT_UNAVAILABLE = 1


class StartError(EventgateError):
    """The relay cannot start: ``message`` is one sentence, ``exit_code`` the shell's status
    (2: the settings, 1: the database is not there)."""

    def __init__(self, message: str, exit_code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class RelayOptions:
    """``eventgate relay``'s options (eventgate/cli.py)."""

    database: str
    sweep_seconds: float = 5.0
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 0


def relay_id() -> str:
    """``host:pid`` of this program: its field in the ``keys.RELAYS`` hash."""
    return f"{socket.gethostname()}:{os.getpid()}"


def run(config: Config, options: RelayOptions) -> None:
    """Relay until SIGTERM or SIGINT. Raises StartError when it cannot start."""
    if options.sweep_seconds <= 0:
        raise StartError("--sweep-seconds must be a positive number of seconds.")
    logformat.configure(config.log_format)
    engine = _engine(options.database)
    publisher = Publisher.from_config(config)
    try:
        outbox = Outbox(engine, publisher)
        outbox.create_tables()
    except ConfigError as error:
        raise StartError(error.message) from None
    except SQLAlchemyError as error:
        raise StartError(
            f"the outbox database is not answering ({type(error).__name__}); is it running?",
            EXIT_UNAVAILABLE,
        ) from None
    loop = outbox.loop(listen=True, sweep_seconds=options.sweep_seconds)
    gauges = OutboxGauges(outbox.relay_)
    server = _serve_metrics(gauges, options)
    status = StatusWriter(publisher.client, gauges, config.status_interval_seconds)
    _stop_on_signals(loop)
    status.start()
    where = engine.url.render_as_string(hide_password=True)
    log.info("outbox relay: relaying %s to Redis (sweep every %gs%s)%s", where,
             options.sweep_seconds, ", LISTEN" if loop.listener is not None else "",
             f"; metrics on {options.metrics_host}:{options.metrics_port}" if server else "")
    try:
        loop.run()
    finally:
        if loop.listener is not None:
            loop.listener.close()
        status.stop()
        if server is not None:
            server.shutdown()
        engine.dispose()
        publisher.client.close()
    log.info("outbox relay: stopped (%d relayed, %d failed rounds)",
             outbox.relay_.relayed, outbox.relay_.failed)


class StatusWriter:
    """Writes this relay's status record every ``interval`` seconds from a thread, and removes
    it on ``stop``. Redis away is no error here: the record is simply not written."""

    def __init__(self, client: redis.Redis, gauges: OutboxGauges, interval: float) -> None:
        self.client = client
        self.gauges = gauges
        self.interval = interval
        self.started_at = time.time()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def record(self) -> dict:
        """This relay's figures now (numbers and an error sentence; never the database URL)."""
        relay = self.gauges.relay
        depth = self.gauges.depth()
        return {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started_at": self.started_at,
            "rows": depth.rows if depth is not None else None,
            "oldest_seconds": depth.oldest_seconds if depth is not None else None,
            "relayed": relay.relayed,
            "failed": relay.failed,
            "last_error": relay.last_error,
        }

    def write(self) -> None:
        try:
            write_record(self.client, relay_id(), self.record(),
                         self.interval * TTL_INTERVALS, keys.RELAYS)
        except (redis.RedisError, OSError) as error:
            log.debug("relay status record not written: %s", type(error).__name__)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="eventgate-relay-status",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
        with contextlib.suppress(redis.RedisError, OSError):
            remove_record(self.client, relay_id(), keys.RELAYS)

    def _run(self) -> None:
        while True:
            self.write()
            if self._stop.wait(self.interval):
                return


def _engine(url: str) -> Engine:
    """An engine for ``url``; plain ``postgresql://`` means psycopg 3 (what the Listener uses
    and the postgres extra installs), not SQLAlchemy's default psycopg2."""
    try:
        check_outbox_url(url, "the outbox URL")
        parsed = make_url(url)
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        return create_engine(parsed)
    except ConfigError as error:
        raise StartError(error.message) from None
    except (ArgumentError, ValueError):  # what the URL's query holds, e.g. a bad option
        raise StartError(
            "the outbox URL is not one SQLAlchemy can use: write it as "
            "postgresql+psycopg://user:password@host/db or sqlite:///path/to/file.db."
        ) from None
    except ImportError as error:  # the URL's driver (psycopg: the postgres extra)
        raise StartError(
            f"the database driver {error.name or ''} is not installed: for PostgreSQL, "
            'pip install "eventgate[postgres]".'
        ) from None


def _serve_metrics(gauges: OutboxGauges, options: RelayOptions):  # type: ignore[no-untyped-def]
    """Serve ``gauges`` on the metrics address (None when the port is 0)."""
    if not options.metrics_port:
        return None
    registry = CollectorRegistry(auto_describe=True)
    registry.register(gauges)
    try:
        server, _ = start_http_server(options.metrics_port, addr=options.metrics_host,
                                      registry=registry)
    except OSError as error:
        raise StartError(
            f"cannot serve metrics on {options.metrics_host}:{options.metrics_port}: "
            f"{error.strerror or error}."
        ) from None
    return server


def _stop_on_signals(loop: RelayLoop) -> None:
    """SIGTERM and SIGINT end the loop after its current round. The handler only starts a
    thread that asks: the signal may arrive while this thread holds one of the loop's Event
    locks, which the handler, running in this same thread, would wait for forever."""

    def handler(signum: int, frame: object) -> None:
        threading.Thread(target=loop.request_stop, name="eventgate-relay-stop").start()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, handler)
