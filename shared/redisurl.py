"""EVENTGATE_REDIS_URL read and checked: which Redis (one, or a Sentinel service) a URL names.

Apart from the clients (shared/redisconn.py) because the config checks the URL at load, in every
process — gunicorn's masters included, which must not import redis-py (nor anything a gevent
worker has to patch first).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

#: A host and port (a sentinel's, a data node's).
Address = tuple[str, int]

SINGLE_SCHEMES = ("redis", "rediss", "unix")
#: Sentinel schemes → whether they speak TLS (to the sentinels and to the data nodes).
SENTINEL_SCHEMES = {"redis+sentinel": False, "rediss+sentinel": True}
DEFAULT_SENTINEL_PORT = 26379
SENTINEL_FORM = "redis+sentinel://[user:password@]host:port[,host:port…]/<service>[/<db>]"


class RedisURLError(ValueError):
    """A Redis URL eventgate cannot use. ``reason`` completes "the Redis URL …" and never
    repeats the URL (it may hold a password)."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"the Redis URL {reason}")
        self.reason = reason


@dataclass(frozen=True)
class SentinelURL:
    """What a ``redis+sentinel://`` URL names: where the sentinels listen, the service they
    monitor, and the database and credentials for its data nodes (the sentinels themselves are
    asked without a password)."""

    sentinels: tuple[Address, ...]
    service: str
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ssl: bool = False

    def node_kwargs(self) -> dict[str, object]:
        """Connection settings for the data nodes (``ssl`` picks redis-py's TLS connection)."""
        return {"db": self.db, "username": self.username, "password": self.password,
                "ssl": self.ssl}


def parse_sentinel_url(url: str) -> SentinelURL | None:
    """The parts of a ``redis+sentinel://`` / ``rediss+sentinel://`` URL (a sentinel's port
    defaults to 26379); None for a URL that names one Redis. Raises RedisURLError for a
    malformed sentinel URL or an unknown scheme."""
    scheme, separator, rest = url.partition("://")
    scheme = scheme.lower()
    if separator and scheme in SINGLE_SCHEMES:
        return None
    if not separator or scheme not in SENTINEL_SCHEMES:
        raise RedisURLError(
            "must start with redis://, rediss://, unix://, redis+sentinel:// or "
            "rediss+sentinel://."
        )
    authority, _, path = rest.partition("/")
    if "?" in path or "#" in path or "?" in authority:
        raise RedisURLError(f"takes no query in its sentinel form: write {SENTINEL_FORM}.")
    userinfo, at, hosts = authority.rpartition("@")
    username = password = None
    if at:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    sentinels = tuple(_sentinel_address(part) for part in hosts.split(","))
    segments = path.split("/") if path else [""]
    service = unquote(segments[0])
    if not service or any(c.isspace() for c in service):
        raise RedisURLError(
            f"names no service: write {SENTINEL_FORM}, with the name the sentinels monitor."
        )
    db_text = segments[1] if len(segments) > 1 else ""
    if len(segments) > 2 or (db_text and not _is_number(db_text)):
        raise RedisURLError(
            f"has something other than a database number after the service: write "
            f"{SENTINEL_FORM}."
        )
    return SentinelURL(sentinels, service, int(db_text or 0), username, password,
                       SENTINEL_SCHEMES[scheme])


def check_redis_url(url: str) -> None:
    """Raise RedisURLError unless ``url`` is a Redis URL eventgate can connect with (checked at
    config load, so that a typo fails at start and not on the first publish). A one-Redis URL's
    options are left to redis-py when it connects."""
    if url.partition("://")[0].lower() in ("redis+cluster", "rediss+cluster"):
        return  # a stand-in until parse_cluster_url (issue 14) checks it
    if parse_sentinel_url(url) is not None:
        return
    parts = urlsplit(url)
    if parts.scheme.lower() == "unix":
        if not parts.path:
            raise RedisURLError("names no socket path: write unix:///path/to/redis.sock.")
        return
    try:
        parts.port  # noqa: B018 - raises ValueError for a port that is not one
    except ValueError:
        raise RedisURLError("has a port that is not a number from 1 to 65535.") from None
    db_text = parts.path.strip("/")
    if db_text and not _is_number(db_text):
        raise RedisURLError("has something other than a database number as its path.")


def _is_number(text: str) -> bool:
    return text.isascii() and text.isdigit() and len(text) <= 5


def _sentinel_address(part: str) -> Address:
    """``host:port``, ``host`` (port 26379) or ``[v6]:port`` → (host, port)."""
    if part.startswith("["):
        host, bracket, tail = part[1:].partition("]")
        if not bracket or (tail and not tail.startswith(":")):
            raise RedisURLError(
                f"has a sentinel address that is not host:port: write {SENTINEL_FORM}."
            )
        has_port, port_text = bool(tail), tail[1:]
    else:
        host, colon, port_text = part.partition(":")
        has_port = bool(colon)
    if not host:
        raise RedisURLError(
            f"names a sentinel without a host: write {SENTINEL_FORM} (one comma between two)."
        )
    if not has_port:
        return host, DEFAULT_SENTINEL_PORT
    if not _is_number(port_text) or not 0 < int(port_text) < 65536:
        raise RedisURLError(
            f"gives sentinel {host} the port {port_text[:20]!r}: a port is a number from 1 to "
            "65535 (26379 when left out)."
        )
    return host, int(port_text)
