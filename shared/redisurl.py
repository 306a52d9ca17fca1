"""EVENTGATE_REDIS_URL read and checked: which Redis (one, a Sentinel service, or a Cluster) a URL
names.

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
#: Cluster schemes → whether they speak TLS.
CLUSTER_SCHEMES = {"redis+cluster": False, "rediss+cluster": True}
DEFAULT_CLUSTER_PORT = 6379
CLUSTER_FORM = "redis+cluster://[user:password@]host:port[,host:port…]"


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


@dataclass(frozen=True)
class ClusterURL:
    """What a ``redis+cluster://`` URL names: the nodes where discovery starts (any of the
    cluster's; the client learns the rest from them) and the credentials for every node."""

    nodes: tuple[Address, ...]
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ssl: bool = False


def _scheme(url: str) -> str:
    scheme, separator, _ = url.partition("://")
    scheme = scheme.lower()
    if separator and (scheme in SINGLE_SCHEMES or scheme in SENTINEL_SCHEMES
                      or scheme in CLUSTER_SCHEMES):
        return scheme
    raise RedisURLError(
        "must start with redis://, rediss://, unix://, redis+sentinel://, rediss+sentinel://, "
        "redis+cluster:// or rediss+cluster://."
    )


def _credentials(userinfo: str) -> tuple[str | None, str | None]:
    user, colon, secret = userinfo.partition(":")
    return unquote(user) or None, unquote(secret) if colon else None


def parse_cluster_url(url: str) -> ClusterURL | None:
    """The parts of a ``redis+cluster://`` / ``rediss+cluster://`` URL (a node's port defaults
    to 6379); None for any other Redis URL. Raises RedisURLError for a malformed cluster URL or
    an unknown scheme. A Cluster has one database, so the URL takes no path."""
    scheme = _scheme(url)
    if scheme not in CLUSTER_SCHEMES:
        return None
    authority, slash, path = url.partition("://")[2].partition("/")
    if "?" in authority or "#" in authority or path.strip("/") or "?" in path:
        raise RedisURLError(
            f"takes no database, path or query in its cluster form (a Cluster has one "
            f"database): write {CLUSTER_FORM}."
        )
    userinfo, at, hosts = authority.rpartition("@")
    username, password = _credentials(userinfo) if at else (None, None)
    nodes = tuple(
        _address(part, DEFAULT_CLUSTER_PORT, "node", CLUSTER_FORM) for part in hosts.split(",")
    )
    return ClusterURL(nodes, username, password, CLUSTER_SCHEMES[scheme])


def parse_sentinel_url(url: str) -> SentinelURL | None:
    """The parts of a ``redis+sentinel://`` / ``rediss+sentinel://`` URL (a sentinel's port
    defaults to 26379); None for a URL that names one Redis or a Cluster. Raises RedisURLError
    for a malformed sentinel URL or an unknown scheme."""
    scheme = _scheme(url)
    if scheme not in SENTINEL_SCHEMES:
        return None
    rest = url.partition("://")[2]
    authority, _, path = rest.partition("/")
    if "?" in path or "#" in path or "?" in authority:
        raise RedisURLError(f"takes no query in its sentinel form: write {SENTINEL_FORM}.")
    userinfo, at, hosts = authority.rpartition("@")
    username, password = _credentials(userinfo) if at else (None, None)
    sentinels = tuple(
        _address(part, DEFAULT_SENTINEL_PORT, "sentinel", SENTINEL_FORM)
        for part in hosts.split(",")
    )
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
    if parse_sentinel_url(url) is not None or parse_cluster_url(url) is not None:
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


def _address(part: str, default_port: int, role: str, form: str) -> Address:
    """``host:port``, ``host`` (``default_port``) or ``[v6]:port`` → (host, port); ``role``
    (sentinel, node) and ``form`` word the error."""
    if part.startswith("["):
        host, bracket, tail = part[1:].partition("]")
        if not bracket or (tail and not tail.startswith(":")):
            raise RedisURLError(f"has a {role} address that is not host:port: write {form}.")
        has_port, port_text = bool(tail), tail[1:]
    else:
        host, colon, port_text = part.partition(":")
        has_port = bool(colon)
    if not host:
        raise RedisURLError(f"names a {role} without a host: write {form} (one comma between two).")
    if not has_port:
        return host, default_port
    if not _is_number(port_text) or not 0 < int(port_text) < 65536:
        raise RedisURLError(
            f"gives {role} {host} the port {port_text[:20]!r}: a port is a number from 1 to "
            f"65535 ({default_port} when left out)."
        )
    return host, int(port_text)
