"""Config (a frozen dataclass) and Config.from_env(): the only code that reads the environment.

Settings come from ``EVENTGATE_*`` variables; ``var/eventgate.env`` (written by ``eventgate init``
on the first run) fills in what the environment does not set. No secret has a default in code:
a missing secret is a ConfigError, and ``write_dev_env`` generates fresh ones per install.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from eventgate.shared.errors import ConfigError, InvalidName
from eventgate.shared.names import validate_grant
from eventgate.shared.publishkeys import parse_publish_keys
from eventgate.shared.redisurl import RedisURLError, check_redis_url
from eventgate.shared.stackredis import REDIS_MODES, StackRedis

ENV_FILE_NAME = "eventgate.env"
MIN_SECRET_CHARS = 32
#: "aaaa…" is long but not a secret; token_urlsafe(32) has about 30 different characters.
MIN_DISTINCT_SECRET_CHARS = 10


def _split_keys(raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def read_env_file(path: Path) -> dict[str, str]:
    """Parse a ``KEY=value`` file (blank lines and ``#`` comments allowed); missing file → {}."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    values: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        values[key.strip()] = value.strip()
    return values


def write_dev_env(var_dir: Path) -> Path:
    """Create ``var/eventgate.env`` with freshly generated dev secrets unless it exists.

    Secrets are random per install, never fixed in code, so a copied dev setup cannot forge tokens
    for another one. An existing file is left untouched: rotating is a deliberate act.
    """
    var_dir.mkdir(parents=True, exist_ok=True)
    path = var_dir / ENV_FILE_NAME
    if not path.exists():
        body = (
            "# Written by `eventgate init`: development secrets for this checkout only.\n"
            f"EVENTGATE_SECRET_KEY={secrets.token_urlsafe(32)}\n"
            f"EVENTGATE_PUBLISH_KEY={secrets.token_urlsafe(32)}\n"
        )
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(body)
    return path


def var_dir_from_env(environ: Mapping[str, str] | None = None) -> Path:
    """Where runtime files live (``EVENTGATE_VAR_DIR``, default ``var``). Needs no secret, so
    ``eventgate init`` can find the directory before any secret exists."""
    env = os.environ if environ is None else environ
    return Path(env.get("EVENTGATE_VAR_DIR", "var"))


@dataclass(frozen=True)
class Config:
    """Every setting of both apps and the CLI. Build it with ``from_env`` or directly in tests."""

    # Secrets (and a URL that may hold a password) stay out of repr(): a logged Config leaks none.
    secret_keys: tuple[str, ...] = field(repr=False)
    publish_keys: tuple[str, ...] = field(repr=False)
    redis_url: str = field(default="redis://127.0.0.1:6399/0", repr=False)
    port: int = 8080
    web_port: int = 8000
    stream_port: int = 8001
    redis_port: int = 6399
    #: The Redis the stack runs (shared/stackredis.py): "single", "sentinel" (a primary, two
    #: replicas, three sentinels) or "cluster" (three primaries, each with a replica). It runs
    #: none when ``redis_url`` names a Redis of the user's own.
    redis_mode: str = "single"
    #: The stack's Redis ``maxmemory`` (Redis' units: bytes, or k/kb/m/mb/g/gb; 0: no limit),
    #: with ``noeviction``: a full Redis refuses writes instead of dropping event logs.
    redis_maxmemory: str = "256mb"
    var_dir: Path = field(default_factory=lambda: Path("var"))
    environment: str = "development"
    heartbeat_seconds: float = 15.0
    retry_ms: int = 3000
    token_ttl_seconds: int = 600
    token_max_ttl_seconds: int = 86400
    max_token_bytes: int = 4096
    max_channels_per_stream: int = 32
    retention_count: int = 10000
    retention_seconds: int = 86400
    max_queue_bytes: int = 1 << 20
    max_queue_frames: int = 10000
    max_event_bytes: int = 64 * 1024
    max_batch_events: int = 1000
    redis_timeout_seconds: float = 0.5
    redis_connect_timeout_seconds: float = 0.5
    redis_pool_size: int = 16
    #: How long a publish's Idempotency-Key is remembered (a repeat within it stores nothing).
    idempotency_seconds: int = 86400
    #: Replicas that must hold an event before its publish is confirmed (0: do not wait).
    durable_replicas: int = 0
    #: "text" or "json" (one JSON object per line, for log shippers); both apps and gunicorn.
    log_format: str = "text"
    #: Opens the ops status page (/status) outside development, as the HTTP basic-auth password.
    #: A secret: never rendered into a config file, never logged.
    ops_key: str = field(default="", repr=False)
    #: How often stream workers write their status record and the web app its status event.
    status_interval_seconds: float = 2.0
    #: Streams one token subject may hold open at once, across all workers (0: no limit).
    max_streams_per_subject: int = 16
    #: Streams one stream worker process holds at most (0: no limit); keep it under the
    #: worker's open-files limit.
    max_streams_per_worker: int = 10000
    #: Origins allowed to open /streams cross-origin (CORS with credentials); none by default.
    cors_origins: tuple[str, ...] = ()
    #: nginx, per client address: new /streams requests per second and the burst allowed above
    #: that rate (0: no limit), and concurrent connections (0: no limit).
    stream_connect_rate: int = 50
    stream_connect_burst: int = 1000
    connections_per_address: int = 2000
    #: nginx timeouts against slow clients (slowloris): whole request header, between two body
    #: reads, between two writes to a client that stopped reading.
    client_header_timeout_seconds: int = 10
    client_body_timeout_seconds: int = 30
    send_timeout_seconds: int = 60
    #: Grant patterns (``orders.42``, ``rooms.*``) of the channels whose logs carry
    #: ``eventgate.join`` / ``eventgate.leave`` events (stream/presence.py); none by default.
    presence_channels: tuple[str, ...] = ()
    #: How long a subject's last stream on such a channel must stay closed before its leave is
    #: written: a reconnect within it is no leave/join pair.
    presence_grace_seconds: float = 5.0
    #: The outbox's database, a SQLAlchemy URL (``postgresql+psycopg://…``, ``sqlite:///…``),
    #: that ``eventgate relay`` relays from; "" runs no relay. May hold a password: kept out of
    #: repr() and of rendered files.
    outbox_url: str = field(default="", repr=False)
    #: Where ``eventgate relay`` serves its metrics, on 127.0.0.1 (0: not served); its
    #: ``--metrics-port`` overrides it.
    outbox_metrics_port: int = 0

    def __post_init__(self) -> None:
        if not self.secret_keys:
            raise ConfigError(
                "EVENTGATE_SECRET_KEY is not set: run `eventgate init` (or `make run`) to write "
                "development secrets to var/eventgate.env, or set the variable."
            )
        if not self.publish_keys:
            raise ConfigError(
                "EVENTGATE_PUBLISH_KEY is not set: run `eventgate init` or set the variable."
            )
        if self.environment == "production":
            publish = [entry.key for entry in parse_publish_keys(self.publish_keys)]
            weak = [k for k in self.secret_keys + tuple(publish)
                    if len(k) < MIN_SECRET_CHARS or len(set(k)) < MIN_DISTINCT_SECRET_CHARS]
            if weak:
                raise ConfigError(
                    f"refusing to start in production with a secret shorter than "
                    f"{MIN_SECRET_CHARS} characters (or of fewer than {MIN_DISTINCT_SECRET_CHARS} "
                    "different characters): generate one with secrets.token_urlsafe(32)."
                )
        if self.heartbeat_seconds <= 0:
            raise ConfigError("EVENTGATE_HEARTBEAT must be a positive number of seconds.")
        parse_publish_keys(self.publish_keys)  # a malformed entry fails here, at start
        try:
            check_redis_url(self.redis_url)
        except RedisURLError as error:
            raise ConfigError(f"EVENTGATE_REDIS_URL {error.reason}") from None
        _check_limits(self)
        if self.log_format not in ("text", "json"):
            raise ConfigError("EVENTGATE_LOG_FORMAT must be text or json.")
        if self.status_interval_seconds <= 0:
            raise ConfigError("EVENTGATE_STATUS_INTERVAL must be a positive number of seconds.")
        _check_stack_redis(self)
        check_outbox_url(self.outbox_url, "EVENTGATE_OUTBOX_URL")
        if not 0 <= self.outbox_metrics_port <= 65535:
            raise ConfigError("EVENTGATE_OUTBOX_METRICS_PORT must be a port number, or 0 (off).")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Config:
        """Read ``EVENTGATE_*`` from ``environ`` (default: the process environment), falling back
        to ``<var_dir>/eventgate.env`` for anything the environment leaves unset."""
        env = dict(os.environ if environ is None else environ)
        var_dir = var_dir_from_env(env)
        merged = {**read_env_file(var_dir / ENV_FILE_NAME), **env}

        def get(name: str, default: str) -> str:
            return merged.get(f"EVENTGATE_{name}", default)

        def number(name: str, default: float, kind: type = int):  # type: ignore[no-untyped-def]
            raw = get(name, str(default))
            try:
                return kind(raw)
            except ValueError:
                raise ConfigError(f"EVENTGATE_{name} must be a number, not {raw!r}.") from None

        redis_port = number("REDIS_PORT", 6399)
        redis_mode = get("REDIS_MODE", "single")
        # An unknown mode is refused by __post_init__; its URL is then never used.
        known_mode = redis_mode if redis_mode in REDIS_MODES else "single"
        stack_url = StackRedis(known_mode, redis_port).url
        return cls(
            secret_keys=_split_keys(get("SECRET_KEY", "")),
            publish_keys=_split_keys(get("PUBLISH_KEY", "")),
            redis_url=get("REDIS_URL", stack_url),
            port=number("PORT", 8080),
            web_port=number("WEB_PORT", 8000),
            stream_port=number("STREAM_PORT", 8001),
            redis_port=redis_port,
            redis_mode=redis_mode,
            redis_maxmemory=get("REDIS_MAXMEMORY", "256mb"),
            var_dir=var_dir,
            environment=get("ENV", "development"),
            heartbeat_seconds=number("HEARTBEAT", 15.0, float),
            retry_ms=number("RETRY_MS", 3000),
            token_ttl_seconds=number("TOKEN_TTL", 600),
            token_max_ttl_seconds=number("TOKEN_MAX_TTL", 86400),
            max_token_bytes=number("MAX_TOKEN_BYTES", 4096),
            max_channels_per_stream=number("MAX_CHANNELS", 32),
            retention_count=number("RETENTION_COUNT", 10000),
            retention_seconds=number("RETENTION_SECONDS", 86400),
            max_queue_bytes=number("MAX_QUEUE_BYTES", 1 << 20),
            max_queue_frames=number("MAX_QUEUE_FRAMES", 10000),
            max_event_bytes=number("MAX_EVENT_BYTES", 64 * 1024),
            max_batch_events=number("MAX_BATCH_EVENTS", 1000),
            redis_timeout_seconds=number("REDIS_TIMEOUT", 0.5, float),
            redis_connect_timeout_seconds=number("REDIS_CONNECT_TIMEOUT", 0.5, float),
            redis_pool_size=number("REDIS_POOL_SIZE", 16),
            idempotency_seconds=number("IDEMPOTENCY_SECONDS", 86400),
            durable_replicas=number("DURABLE_REPLICAS", 0),
            log_format=get("LOG_FORMAT", "text"),
            ops_key=get("OPS_KEY", ""),
            status_interval_seconds=number("STATUS_INTERVAL", 2.0, float),
            max_streams_per_subject=number("MAX_STREAMS_PER_SUBJECT", 16),
            max_streams_per_worker=number("MAX_STREAMS_PER_WORKER", 10000),
            cors_origins=_split_keys(get("CORS_ORIGINS", "")),
            stream_connect_rate=number("STREAM_CONNECT_RATE", 50),
            stream_connect_burst=number("STREAM_CONNECT_BURST", 1000),
            connections_per_address=number("CONNECTIONS_PER_ADDRESS", 2000),
            client_header_timeout_seconds=number("CLIENT_HEADER_TIMEOUT", 10),
            client_body_timeout_seconds=number("CLIENT_BODY_TIMEOUT", 30),
            send_timeout_seconds=number("SEND_TIMEOUT", 60),
            presence_channels=_split_keys(get("PRESENCE_CHANNELS", "")),
            presence_grace_seconds=number("PRESENCE_GRACE_SECONDS", 5.0, float),
            outbox_url=get("OUTBOX_URL", ""),
            outbox_metrics_port=number("OUTBOX_METRICS_PORT", 0),
        )


#: Request bodies above this are refused with 413 whatever the batch settings allow.
MAX_REQUEST_BYTES_CAP = 4 * 1024 * 1024
# Room for the JSON around one event's data (channel, type, field names, escapes).
_EVENT_OVERHEAD_BYTES = 1024


def max_request_bytes(config: Config) -> int:
    """The largest request body accepted: a full batch of full-size events, capped at
    ``MAX_REQUEST_BYTES_CAP`` — but always enough for one full-size event, even escaped.

    The web app and nginx (``client_max_body_size``, rendered by deploy/) must use this same
    number. nginx refusing first is what makes a 413 reliable: a body the app refuses unread
    makes gunicorn close the connection while nginx is still sending it, and nginx then answers
    502 (our 503 ``unavailable``) instead of the app's 413.
    """
    batch = config.max_batch_events * (config.max_event_bytes + _EVENT_OVERHEAD_BYTES)
    one_event = 2 * config.max_event_bytes + _EVENT_OVERHEAD_BYTES
    return max(min(batch, MAX_REQUEST_BYTES_CAP), one_event)

#: An origin as a browser sends it: scheme, host, optional port; lowercase, no path. Checked
#: strictly because configured origins are echoed in response headers and rendered into nginx.
ORIGIN = re.compile(r"https?://([a-z0-9-]+(\.[a-z0-9-]+)*|\[[0-9a-f:.]+\])(:[0-9]{1,5})?")


def _check_limits(config: Config) -> None:
    """Refuse limit settings that cannot mean anything: a typo should fail at start."""
    limits = {"max_streams_per_subject": "MAX_STREAMS_PER_SUBJECT",
              "max_streams_per_worker": "MAX_STREAMS_PER_WORKER",
              "stream_connect_rate": "STREAM_CONNECT_RATE",
              "stream_connect_burst": "STREAM_CONNECT_BURST",
              "connections_per_address": "CONNECTIONS_PER_ADDRESS"}
    for field_name, env_name in limits.items():
        if getattr(config, field_name) < 0:
            raise ConfigError(f"EVENTGATE_{env_name} must be 0 (no limit) or a positive number.")
    timeouts = {"client_header_timeout_seconds": "CLIENT_HEADER_TIMEOUT",
                "client_body_timeout_seconds": "CLIENT_BODY_TIMEOUT",
                "send_timeout_seconds": "SEND_TIMEOUT"}
    for field_name, env_name in timeouts.items():
        if getattr(config, field_name) < 1:
            raise ConfigError(f"EVENTGATE_{env_name} must be a whole number of seconds, >= 1.")
    if config.idempotency_seconds < 1:
        raise ConfigError("EVENTGATE_IDEMPOTENCY_SECONDS must be a whole number of seconds, >= 1.")
    if config.durable_replicas < 0:
        raise ConfigError(
            "EVENTGATE_DURABLE_REPLICAS must be 0 (confirm without waiting for replicas) or the "
            "number of replicas that must hold each event."
        )
    for origin in config.cors_origins:
        if not ORIGIN.fullmatch(origin):
            raise ConfigError(
                f"EVENTGATE_CORS_ORIGINS entry {origin[:80]!r} is not an origin: write it as the "
                "browser sends it, e.g. https://app.example.com or http://localhost:3000 "
                "(lowercase, no path, no trailing slash; '*' and 'null' are refused)."
            )

    _check_presence(config)


def _check_presence(config: Config) -> None:
    for pattern in config.presence_channels:
        try:
            validate_grant(pattern)
        except InvalidName:
            raise ConfigError(
                f"EVENTGATE_PRESENCE_CHANNELS entry {pattern[:80]!r} is not a grant pattern: "
                "write a channel name or prefix.* (e.g. rooms.*), comma-separated."
            ) from None
    if config.presence_grace_seconds < 0:
        raise ConfigError("EVENTGATE_PRESENCE_GRACE_SECONDS must be 0 or a number of seconds.")


#: The databases the outbox supports (shared/outboxtable.py), as URL scheme prefixes.
OUTBOX_SCHEMES = ("postgresql", "sqlite")


def check_outbox_url(url: str, name: str) -> None:
    """Refuse an outbox URL SQLAlchemy cannot read, or of a database the outbox does not
    support, at start rather than at the relay's first round; ``name`` is where it came from,
    for the message. The messages never quote the URL (it may hold a password)."""
    if not url:
        return
    try:
        from sqlalchemy.engine import make_url  # the outbox extra; without it, the scheme only
    except ImportError:
        scheme = url.partition("://")[0] if "://" in url else ""
    else:
        try:
            scheme = make_url(url).drivername
        except Exception:  # noqa: BLE001 - ArgumentError, ValueError: any malformed URL
            scheme = ""
    if not scheme:
        raise ConfigError(
            f"{name} is not a database URL SQLAlchemy can read: write it as "
            "postgresql+psycopg://user:password@host/db or sqlite:///path/to/file.db."
        )
    backend = scheme.partition("+")[0]
    if backend not in OUTBOX_SCHEMES:
        raise ConfigError(
            f"{name} names a {backend[:20]!r} database; the outbox supports "
            "PostgreSQL (postgresql://…, postgresql+psycopg://…) and SQLite (sqlite:///…)."
        )


#: ``maxmemory`` as Redis reads it: bytes, or a number with a unit (case does not matter).
_REDIS_SIZE = re.compile(r"[0-9]+(k|kb|m|mb|g|gb)?", re.IGNORECASE)


def _check_stack_redis(config: Config) -> None:
    """Refuse a Redis mode, size or port block the stack could not run."""
    if config.redis_mode not in REDIS_MODES:
        raise ConfigError(
            "EVENTGATE_REDIS_MODE must be single, sentinel or cluster, not "
            f"{config.redis_mode[:40]!r}."
        )
    if not _REDIS_SIZE.fullmatch(config.redis_maxmemory):
        raise ConfigError(
            "EVENTGATE_REDIS_MAXMEMORY must be a size as Redis writes it: bytes, or a number "
            "with k, kb, m, mb, g or gb (e.g. 256mb; 0 is no limit), not "
            f"{config.redis_maxmemory[:40]!r}."
        )
    stack = StackRedis(config.redis_mode, config.redis_port)
    if not stack.serves(config.redis_url):
        return  # the user's own Redis: the stack runs none, and uses none of these ports
    if not (stack.port > 0 and stack.ports[-1] <= 65535):
        raise ConfigError(
            f"EVENTGATE_REDIS_PORT={config.redis_port}: the {config.redis_mode} mode listens on "
            f"{len(stack.ports)} ports from there, which must all be below 65536."
        )
    taken = {"EVENTGATE_PORT": config.port, "EVENTGATE_WEB_PORT": config.web_port,
             "EVENTGATE_STREAM_PORT": config.stream_port}
    for name, port in taken.items():
        if port in stack.ports:
            raise ConfigError(
                f"{name}={port} is one of the stack's Redis ports ({stack.ports[0]}-"
                f"{stack.ports[-1]} in {config.redis_mode} mode, from EVENTGATE_REDIS_PORT): "
                "choose another."
            )
