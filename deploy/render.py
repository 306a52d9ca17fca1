"""The template syntax, and rendering: the development stack (render_stack) and the production
files (render_production), from the templates beside this module.

The stack (``make run``/``make up``) and the tests render the same templates, so what is tested is
what is deployed; the development and the production nginx share their limits (nginx_limits).
Rendered files hold paths, ports and settings, never a secret: the apps read secrets from
``<var>/eventgate.env`` (or the environment they inherit). Nothing here needs a checkout: the
templates are package data, and no rendered program runs in, or imports from, a checkout.

Command lines: ``python -m eventgate.deploy.stack render`` (deploy/stack.py) and
``python -m eventgate.deploy.production render`` (deploy/production.py).
"""

from __future__ import annotations

import grp
import os
import pwd
import re
import resource
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from string import Template
from typing import Protocol
from urllib.parse import urlsplit

from eventgate.deploy.redisprograms import RedisProgram, redis_programs
from eventgate.shared.config import ORIGIN, Config, max_request_bytes
from eventgate.shared.errors import ConfigError

# Package data: found beside this module, in a checkout and in an installed wheel alike.
TEMPLATES = Path(__file__).resolve().parent
SUPERVISOR_TEMPLATE = TEMPLATES / "supervisor" / "supervisord.conf.tmpl"
REDIS_PROGRAM_TEMPLATE = TEMPLATES / "supervisor" / "redis-program.conf.tmpl"
RELAY_PROGRAM_TEMPLATE = TEMPLATES / "supervisor" / "relay-program.conf.tmpl"
NGINX_TEMPLATE = TEMPLATES / "nginx" / "nginx.conf.tmpl"
#: What both edges' nginx.conf include, each from one template, rendered beside the development
#: nginx.conf and beside the production edge's: the proxy settings every proxied location
#: shares, and nginx's own answers to errors (each error page written once).
NGINX_PROXY_TEMPLATE = TEMPLATES / "nginx" / "eventgate-proxy.conf.tmpl"
NGINX_PROXY_CONF = "eventgate-proxy.conf"
NGINX_ERRORS_TEMPLATE = TEMPLATES / "nginx" / "eventgate-errors.conf.tmpl"
NGINX_ERRORS_CONF = "eventgate-errors.conf"
NGINX_INCLUDES = ((NGINX_PROXY_TEMPLATE, NGINX_PROXY_CONF),
                  (NGINX_ERRORS_TEMPLATE, NGINX_ERRORS_CONF))
PRODUCTION_TEMPLATES = TEMPLATES / "production"
RUNTIME_DIRS = ("conf", "run", "log", "redis", "nginx")

#: Open files wanted for supervisord and its children; lowered to the hard limit when not root.
WANTED_FDS = 20000
#: The stream pool's Unix socket (under the var dir), nginx's way in: cheaper per delivery than
#: TCP loopback (docs/performance.md). The pool still listens on its loopback port as well.
STREAM_SOCKET = "run/stream.sock"
#: A Unix socket path longer than this (sun_path: 108 bytes with its NUL) cannot be bound.
MAX_SOCKET_PATH = 100
NGINX_CONNECTIONS_PER_WORKER = 8192
#: The base reconnection delay of nginx's retry fallback (``location @stream_unavailable``, the
#: answer to a stream no worker took): shorter than the pool's own EVENTGATE_RETRY_MS, as the
#: pool is most often back within a restart. Jittered like the pool's (fallback_retry_map).
FALLBACK_RETRY_MS = 2000
#: The last character of nginx's $request_id (random hex, per request) picks the delay.
_HEX_DIGITS = "0123456789abcdef"

#: Config field -> the EVENTGATE_* variable Config.from_env reads it from. Secrets are absent on
#: purpose; a test checks that every other field is here, so a new setting cannot be forgotten.
ENV_NAMES = {
    "redis_url": "REDIS_URL",
    "port": "PORT",
    "web_port": "WEB_PORT",
    "stream_port": "STREAM_PORT",
    "redis_port": "REDIS_PORT",
    "redis_mode": "REDIS_MODE",
    "redis_maxmemory": "REDIS_MAXMEMORY",
    "var_dir": "VAR_DIR",
    "environment": "ENV",
    "heartbeat_seconds": "HEARTBEAT",
    "retry_ms": "RETRY_MS",
    "token_ttl_seconds": "TOKEN_TTL",
    "token_max_ttl_seconds": "TOKEN_MAX_TTL",
    "max_token_bytes": "MAX_TOKEN_BYTES",
    "max_channels_per_stream": "MAX_CHANNELS",
    "retention_count": "RETENTION_COUNT",
    "retention_seconds": "RETENTION_SECONDS",
    "max_queue_bytes": "MAX_QUEUE_BYTES",
    "max_queue_frames": "MAX_QUEUE_FRAMES",
    "max_event_bytes": "MAX_EVENT_BYTES",
    "max_batch_events": "MAX_BATCH_EVENTS",
    "redis_timeout_seconds": "REDIS_TIMEOUT",
    "redis_connect_timeout_seconds": "REDIS_CONNECT_TIMEOUT",
    "redis_pool_size": "REDIS_POOL_SIZE",
    "idempotency_seconds": "IDEMPOTENCY_SECONDS",
    "durable_replicas": "DURABLE_REPLICAS",
    "max_streams_per_subject": "MAX_STREAMS_PER_SUBJECT",
    "max_streams_per_worker": "MAX_STREAMS_PER_WORKER",
    "cors_origins": "CORS_ORIGINS",
    "stream_connect_rate": "STREAM_CONNECT_RATE",
    "stream_connect_burst": "STREAM_CONNECT_BURST",
    "connections_per_address": "CONNECTIONS_PER_ADDRESS",
    "client_header_timeout_seconds": "CLIENT_HEADER_TIMEOUT",
    "client_body_timeout_seconds": "CLIENT_BODY_TIMEOUT",
    "send_timeout_seconds": "SEND_TIMEOUT",
    "log_format": "LOG_FORMAT",
    "status_interval_seconds": "STATUS_INTERVAL",
    "outbox_url": "OUTBOX_URL",
    "outbox_metrics_port": "OUTBOX_METRICS_PORT",
    "presence_channels": "PRESENCE_CHANNELS",
    "presence_grace_seconds": "PRESENCE_GRACE_SECONDS",
}

# Paths go unquoted into supervisor and nginx syntax: allow only characters safe in both.
_SAFE_PATH = re.compile(r"^[\w./@+-]+$")


class _BracedTemplate(Template):
    """Only ``${name}`` is a placeholder, so nginx's own ``$uri`` stays as written."""

    pattern = r"""
    \$(?:
      (?P<escaped>(?!))
    | (?P<named>(?!))
    | \{(?P<braced>[_a-z][_a-z0-9]*)\}
    | (?P<invalid>(?!))
    )
    """


def resolve_var_dir(config: Config, root: Path) -> Path:
    """The stack's absolute var dir: ``config.var_dir``, relative paths taken from ``root``."""
    return (root / config.var_dir).resolve()


def app_environment(config: Config, var: Path) -> dict[str, str]:
    """The non-secret EVENTGATE_* settings both apps get, so a rendered stack runs as rendered.

    A Redis or outbox URL with a password is left out: the apps then read it where it came
    from (``eventgate.env`` or the environment supervisord inherits)."""
    env: dict[str, str] = {}
    for field_name, name in ENV_NAMES.items():
        value = getattr(config, field_name)
        if isinstance(value, tuple):  # lists are comma-separated, as Config.from_env reads them
            value = ",".join(value)
        if field_name == "var_dir":
            value = var
        if field_name in ("redis_url", "outbox_url") and urlsplit(str(value)).password:
            continue
        env[f"EVENTGATE_{name}"] = str(value)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def render_stack(
    config: Config,
    *,
    root: Path,
    python_bin_dir: Path,
    foreground: bool,
    web_workers: int = 2,
    stream_workers: int = 2,
) -> Path:
    """Write ``<var>/conf/supervisord.conf``, ``<var>/conf/nginx.conf`` and the files that
    nginx.conf includes (``eventgate-proxy.conf``, ``eventgate-errors.conf``: NGINX_INCLUDES);
    return the first.

    ``root``: where a relative ``config.var_dir`` is taken from (the Makefile's working
    directory). Every program runs in the var dir, not in ``root``: gunicorn puts its working
    directory first on ``sys.path``, and the package must come from the venv (editable or not),
    never from a folder that happens to be there. ``python_bin_dir`` holds the venv's gunicorn.
    Creates the runtime dirs. Raises ConfigError for a path that the config syntaxes cannot hold.
    """
    var = resolve_var_dir(config, root)
    # The programs run in var: a relative SQLite path means what it meant where we render.
    config = replace(config, outbox_url=absolute_sqlite_url(config.outbox_url, root))
    for path in (var, python_bin_dir):
        if not _SAFE_PATH.match(str(path)):
            raise ConfigError(f"{path} holds characters the rendered configs cannot quote.")
    for name in RUNTIME_DIRS:
        (var / name).mkdir(parents=True, exist_ok=True)
    fds = _open_files_limit()
    worker_connections = min(NGINX_CONNECTIONS_PER_WORKER, fds // 2)
    binds = stream_binds(config, var)
    redis = redis_programs(config, var, python_bin_dir,
                           _program("redis-server", "/usr/bin/redis-server"))
    environment = supervisor_environment(app_environment(config, var))
    supervisor_values = {
        "var": var,
        "python_bin": python_bin_dir,
        "nodaemon": "true" if foreground else "false",
        "minfds": fds,
        "redis_programs": _redis_sections(redis, var),
        "nginx_bin": _program("nginx", "/usr/sbin/nginx"),
        "web_port": config.web_port,
        "stream_port": config.stream_port,
        "web_workers": web_workers,
        "stream_workers": stream_workers,
        "stream_binds": " ".join(f"--bind {bind}" for bind in binds),
        "app_environment": environment,
        "relay_program": _relay_section(config, var, python_bin_dir, environment),
    }
    nginx_values = {
        "var": var,
        "port": config.port,
        "web_port": config.web_port,
        "stream_port": config.stream_port,
        "stream_servers": _stream_servers(binds),
        "user_directive": _nginx_user_directive(),
        "worker_connections": worker_connections,
        "worker_rlimit_nofile": 2 * worker_connections,
        "extra_temp_paths": _nginx_extra_temp_paths(var, supervisor_values["nginx_bin"]),
        "conf_dir": var / "conf",
        **nginx_limits(config),
        **fallback_retry_map(),
    }
    conf = var / "conf"
    (conf / "nginx.conf").write_text(render_template(NGINX_TEMPLATE, nginx_values))
    for template, name in NGINX_INCLUDES:
        (conf / name).write_text(render_template(template, nginx_values))
    supervisord_conf = conf / "supervisord.conf"
    supervisord_conf.write_text(render_template(SUPERVISOR_TEMPLATE, supervisor_values))
    return supervisord_conf


def stream_binds(config: Config, var: Path) -> list[str]:
    """The stream pool's gunicorn binds: the loopback port (direct calls, /streams/metrics,
    nginx's backup), then the Unix socket nginx proxies to, unless the var dir's path is too
    long for one (then nginx uses the port)."""
    binds = [f"127.0.0.1:{config.stream_port}"]
    socket_path = var / STREAM_SOCKET
    if len(str(socket_path)) <= MAX_SOCKET_PATH:
        binds.append(f"unix:{socket_path}")
    return binds


def _stream_servers(binds: list[str]) -> str:
    """nginx's servers for the stream pool: its Unix socket first, its port as the backup."""
    if len(binds) == 1:
        return f"        server {binds[0]};"
    port, unix = binds
    return f"        server {unix} max_fails=0;\n        server {port} backup max_fails=0;"


class NginxSettings(Protocol):
    """What ``nginx_limits`` reads: a Config, or a Production (whose fields of these names mean
    the same), so that the development and production nginx agree."""

    connections_per_address: int
    stream_connect_rate: int
    stream_connect_burst: int
    cors_origins: tuple[str, ...]
    client_header_timeout_seconds: int
    client_body_timeout_seconds: int
    send_timeout_seconds: int
    max_event_bytes: int  # these two: max_request_bytes()
    max_batch_events: int


def nginx_limits(config: NginxSettings, zone_size: str = "10m") -> dict[str, str]:
    """The nginx template's limit, timeout and CORS values: per client address, concurrent
    connections (``limit_conn``) and new streams per second (``limit_req`` on /streams), both
    answered 429 JSON; slow-client timeouts; the origins whose cross-origin streams get CORS
    headers on nginx's own answers too. A limit of 0 renders as a comment: no limit.
    ``zone_size``: the shared memory of each per-address zone (10m: at least 80,000 addresses)."""
    # Refusals are logged at info, below the error log's level: that line would hold the request
    # line, query string (a token) included. The access log has every 429 with the path only.
    zones = ["limit_conn_status 429;", "limit_req_status 429;",
             "limit_conn_log_level info;", "limit_req_log_level info;"]
    if config.connections_per_address:
        zones.append(f"limit_conn_zone $binary_remote_addr zone=eventgate_addr:{zone_size};")
        limit_conn = f"limit_conn eventgate_addr {config.connections_per_address};"
    else:
        limit_conn = "# no limit_conn: EVENTGATE_CONNECTIONS_PER_ADDRESS=0"
    if config.stream_connect_rate:
        zones.append(
            f"limit_req_zone $binary_remote_addr zone=eventgate_connect:{zone_size} "
            f"rate={config.stream_connect_rate}r/s;"
        )
        limit_req = (
            f"limit_req zone=eventgate_connect burst={config.stream_connect_burst} nodelay;"
        )
    else:
        limit_req = "# no limit_req: EVENTGATE_STREAM_CONNECT_RATE=0"
    # Config admits only plain origins (no quotes, spaces or ';'), safe in nginx quotes.
    origins = "".join(f'\n        "{origin}" $http_origin;' for origin in config.cors_origins)
    return {
        "limit_zones": "\n    ".join(zones),
        "limit_conn": limit_conn,
        "limit_req": limit_req,
        "cors_origin_map": origins,
        "client_header_timeout": f"{config.client_header_timeout_seconds}s",
        "client_body_timeout": f"{config.client_body_timeout_seconds}s",
        "send_timeout": f"{config.send_timeout_seconds}s",
        # The app's own limit: nginx refuses first, with JSON (see shared/config.py).
        "client_max_body_size": max_request_bytes(config),
    }


def fallback_retry_delays(base_ms: int = FALLBACK_RETRY_MS) -> list[int]:
    """The retry fallback's reconnection delays, one per hex digit, evenly over
    [base/2, base*3/2]: the spread the pool draws its own ``retry:`` from (stream/opening.py,
    ``jittered``), so that browsers turned away together (the pool down, every worker full)
    do not all come back in the same instant."""
    last = len(_HEX_DIGITS) - 1
    return [round(base_ms * (0.5 + index / last)) for index in range(len(_HEX_DIGITS))]


def fallback_retry_map() -> dict[str, str]:
    """Both nginx templates' ``map $request_id $eventgate_stream_retry``: plain nginx has no
    random numbers, but $request_id is random per request, and its last hex digit picks one of
    ``fallback_retry_delays``."""
    entries = "".join(f'\n        "~{digit}$" {delay};'
                      for digit, delay in zip(_HEX_DIGITS, fallback_retry_delays(), strict=True))
    return {"fallback_retry_ms": str(FALLBACK_RETRY_MS), "fallback_retry_map": entries}


def render_template(template: Path, values: Mapping[str, object]) -> str:
    """``template`` with every ``${name}`` filled from ``values`` (one syntax for development and
    production). A placeholder that ``values`` lacks is a KeyError: the renderer's bug."""
    text = _BracedTemplate(template.read_text()).substitute({k: str(v) for k, v in values.items()})
    if "${" in text:
        raise ConfigError(f"{template} has a placeholder that the renderer does not fill.")
    return text


def supervisor_environment(env: Mapping[str, str]) -> str:
    """``env`` as a supervisor ``environment=`` value. Raises ConfigError for a value it cannot
    quote."""
    for key, value in env.items():
        if any(char in value for char in '"\\\n'):
            raise ConfigError(f"{key} holds a character supervisor's environment cannot quote.")
    # supervisor expands %(name)s in environment values: double every literal '%'.
    return ",".join(f'{key}="{value.replace("%", "%%")}"' for key, value in env.items())


def _redis_sections(programs: list[RedisProgram], var: Path) -> str:
    if not programs:
        return "; No Redis program: EVENTGATE_REDIS_URL names a Redis of your own."
    return "\n\n".join(
        render_template(REDIS_PROGRAM_TEMPLATE, {
            "name": program.name, "command": " ".join(program.command),
            "directory": program.directory, "priority": program.priority, "var": var,
            # A one-shot program has started once it runs, and ends for good with exit 0.
            "autorestart": "false" if program.oneshot else "true",
            "startsecs": 0 if program.oneshot else 1,
        }).rstrip("\n")
        for program in programs
    )


def _relay_section(config: Config, var: Path, python_bin_dir: Path, environment: str) -> str:
    """The ``relay`` program (``eventgate relay``) when there is an outbox to relay."""
    if not config.outbox_url:
        return "; No outbox relay: EVENTGATE_OUTBOX_URL is not set."
    return render_template(RELAY_PROGRAM_TEMPLATE, {
        "var": var, "python_bin": python_bin_dir, "app_environment": environment,
    }).rstrip("\n")


def absolute_sqlite_url(url: str, root: Path) -> str:
    """``url`` with a relative SQLite file path taken from ``root`` (other URLs unchanged):
    ``sqlite:///var/outbox.db`` → ``sqlite:////<root>/var/outbox.db``."""
    prefix, separator, path = url.partition(":///")
    if not separator or not prefix.startswith("sqlite") or not path or path.startswith("/"):
        return url
    if path == ":memory:" or path.startswith("file:"):
        return url
    return f"{prefix}:///{(root / path).resolve()}"


def _program(name: str, fallback: str) -> str:
    # /usr/sbin is often missing from a non-root PATH, but nginx lives there on Debian.
    found = shutil.which(name) or shutil.which(name, path="/usr/local/sbin:/usr/sbin:/sbin")
    return found or fallback


def _open_files_limit() -> int:
    """WANTED_FDS, or the hard limit when lower and we cannot raise it (supervisord would exit)."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if os.geteuid() == 0 or hard == resource.RLIM_INFINITY:
        return WANTED_FDS
    return min(WANTED_FDS, hard)


def _nginx_user_directive() -> str:
    # A root master would start its workers as "nobody", who cannot write the temp dirs under var/.
    if os.geteuid() != 0:
        return "# no user directive: nginx runs as the user who started the stack"
    user = pwd.getpwuid(os.geteuid()).pw_name
    group = grp.getgrgid(os.getegid()).gr_name
    return f"user {user} {group};"


def _nginx_extra_temp_paths(var: Path, nginx_bin: str) -> str:
    """Temp paths of the modules this nginx was built with: left unset, nginx would try to create
    its compiled-in defaults under /var/lib/nginx, which a non-root user cannot."""
    try:
        build = subprocess.run(
            [nginx_bin, "-V"], capture_output=True, text=True, timeout=10, check=False
        ).stderr
    except OSError:
        build = ""
    lines = [
        f"    {module}_temp_path {var}/nginx/{module};"
        for module in ("fastcgi", "uwsgi", "scgi")
        if f"--without-http_{module}_module" not in build
    ]
    return "\n".join(lines)


# -- production (deploy/production/, docs/deploy.md section 2) -----------------------------------
# The edge's limits, timeouts and CORS origins are the development stack's (nginx_limits, fed with
# a Production instead of a Config: the fields have the same names and meanings). The request size
# and the CORS origins go into the app nodes' environment too, so that the edge and the apps
# cannot disagree.

_ADDRESS = re.compile(r"^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):[0-9]{1,5}$")
_SAFE = re.compile(r"^[\w./@+:-]+$")
_LISTEN_ADDRESS = re.compile(r"^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)?$")


def _app_default(name: str) -> int:
    """Config's default for a setting both the apps and the edge read: one number, one place."""
    return next(field.default for field in fields(Config) if field.name == name)


#: Production fields that are also Config settings, and must be the same on the edge and the
#: nodes: rendered into the edge nginx and into the nodes' environment (EVENTGATE_<NAME>).
APP_SETTINGS = {
    "max_event_bytes": "MAX_EVENT_BYTES",
    "max_batch_events": "MAX_BATCH_EVENTS",
    "cors_origins": "CORS_ORIGINS",
}
#: Edge-only limits (nginx), with the meaning of the EVENTGATE_* setting of the same name.
EDGE_LIMITS = (
    "connections_per_address", "stream_connect_rate", "stream_connect_burst",
    "client_header_timeout_seconds", "client_body_timeout_seconds", "send_timeout_seconds",
)


@dataclass(frozen=True)
class Production:
    """What differs between installations. Sizes follow docs/deploy.md ("Sizing")."""

    server_name: str
    stream_nodes: tuple[str, ...]
    web_nodes: tuple[str, ...]
    tls_certificate: str
    tls_certificate_key: str
    #: The virtualenv that ``pip install "eventgate[server]"`` installed into (its bin/ holds
    #: gunicorn). No checkout: the programs import the installed package.
    venv: str = "/opt/eventgate"
    #: The eventgate user's own directory (eventgate.env, run/, metrics/), and the programs'
    #: working directory: it exists on every node, and holds nothing importable (gunicorn puts its
    #: working directory first on sys.path, where a stray eventgate/ folder would shadow the
    #: installed package).
    var_dir: str = "/var/lib/eventgate"
    log_dir: str = "/var/log/eventgate"
    user: str = "eventgate"
    bind_address: str = "0.0.0.0"
    web_port: int = 8000
    stream_port: int = 8001
    web_workers: int = 4
    stream_workers: int = 4
    worker_streams: int = 10000
    #: Where the edge listens: "" is every IPv4 and IPv6 address.
    listen_address: str = ""
    http_port: int = 80
    https_port: int = 443
    nginx_user: str = "www-data"
    nginx_log_dir: str = "/var/log/nginx"
    nginx_run_dir: str = "/run"
    nginx_conf_dir: str = "/etc/nginx"
    nginx_temp_dir: str = ""
    streams_per_nginx_worker: int = 32768
    #: Shared memory of each per-address limit zone (20m: at least 160,000 addresses).
    limit_zone_size: str = "20m"
    # Both the apps and the edge (APP_SETTINGS); the largest request body follows from the first
    # two (shared/config.py).
    max_event_bytes: int = _app_default("max_event_bytes")
    max_batch_events: int = _app_default("max_batch_events")
    cors_origins: tuple[str, ...] = ()
    # The edge only (EDGE_LIMITS); a count of 0 is no limit.
    connections_per_address: int = _app_default("connections_per_address")
    stream_connect_rate: int = _app_default("stream_connect_rate")
    stream_connect_burst: int = _app_default("stream_connect_burst")
    client_header_timeout_seconds: int = _app_default("client_header_timeout_seconds")
    client_body_timeout_seconds: int = _app_default("client_body_timeout_seconds")
    send_timeout_seconds: int = _app_default("send_timeout_seconds")
    #: Run ``eventgate relay`` on the app nodes (the transactional outbox; its
    #: EVENTGATE_OUTBOX_URL goes into each node's eventgate.env).
    outbox_relay: bool = False


def render_production(production: Production, out: Path) -> list[Path]:
    """Write the four files under ``out``; returns their paths. Raises ConfigError for an
    address, path or setting the config syntaxes (or the apps) cannot hold."""
    values = asdict(production)
    _check(production, values)
    connections = 2 * production.streams_per_nginx_worker
    nginx_values = {
        **{k: v for k, v in values.items() if not k.startswith("nginx_")},
        **nginx_limits(production, zone_size=production.limit_zone_size),
        **fallback_retry_map(),
        "http_listen": _listen(production.listen_address, production.http_port, ""),
        "https_listen": _listen(production.listen_address, production.https_port, " ssl http2"),
        "https_port_suffix": "" if production.https_port == 443 else f":{production.https_port}",
        "nginx_user": production.nginx_user,
        "log_dir": production.nginx_log_dir,
        "run_dir": production.nginx_run_dir,
        "conf_dir": production.nginx_conf_dir,
        "streams_per_worker": production.streams_per_nginx_worker,
        "worker_connections": connections,
        "worker_rlimit_nofile": 2 * connections,
        "temp_paths": _temp_paths(production.nginx_temp_dir),
        "stream_servers": _servers(production.stream_nodes),
        "web_servers": _servers(production.web_nodes),
    }
    supervisor_values = {
        **values,
        "app_settings": supervisor_environment(app_settings(production)),
        # One open file per stream plus a margin, for every stream worker of the node.
        "minfds": production.stream_workers * (production.worker_streams + 1024),
        "relay_in_group": ",eventgate-relay" if production.outbox_relay else "",
        "relay_program": (
            render_template(PRODUCTION_TEMPLATES / "supervisor" / "relay-program.conf.tmpl",
                            values).rstrip("\n")
            if production.outbox_relay
            else "; No outbox relay (render with --outbox-relay to run `eventgate relay`)."
        ),
    }
    written = []
    for template, target, filled in (
        (PRODUCTION_TEMPLATES / "supervisor" / "eventgate.conf.tmpl",
         "supervisor/eventgate.conf", supervisor_values),
        (PRODUCTION_TEMPLATES / "nginx" / "nginx.conf.tmpl", "nginx/nginx.conf", nginx_values),
        *((template, f"nginx/{name}", nginx_values) for template, name in NGINX_INCLUDES),
    ):
        path = out / target
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render_template(template, filled))
        written.append(path)
    return written


def app_settings(production: Production) -> dict[str, str]:
    """EVENTGATE_* for the settings the apps and the edge share, as Config.from_env reads them."""
    settings = {}
    for field_name, env_name in APP_SETTINGS.items():
        value = getattr(production, field_name)
        if isinstance(value, tuple):
            value = ",".join(value)
        settings[f"EVENTGATE_{env_name}"] = str(value)
    return settings


def _check(production: Production, values: dict[str, object]) -> None:
    for name in ("stream_nodes", "web_nodes"):
        if not values[name]:
            raise ConfigError(f"{name}: name at least one HOST:PORT.")
        for node in values[name]:
            if not _ADDRESS.match(node):
                raise ConfigError(f"{node!r} is not HOST:PORT.")
    for name, value in values.items():
        if name == "listen_address":  # [IPv6] too: checked below
            continue
        if name == "nginx_user":  # "user" or "user group"
            value = str(value).replace(" ", ":", 1)
        if isinstance(value, str) and value and not _SAFE.match(value):
            raise ConfigError(f"{name} holds characters the rendered configs cannot quote.")
    if not _LISTEN_ADDRESS.match(production.listen_address):
        raise ConfigError("listen_address: an IPv4 address, [IPv6] or a host name, or empty.")
    if not re.fullmatch(r"[0-9]+[km]", production.limit_zone_size):
        raise ConfigError("limit_zone_size: a size such as 20m.")
    # What Config would refuse at start on the nodes, refused here for the edge too.
    for origin in production.cors_origins:
        if not ORIGIN.fullmatch(origin):
            raise ConfigError(f"cors_origins: {origin[:80]!r} is not an origin such as "
                              "https://app.example.com (lowercase, no path, no '*').")
    for name in ("max_event_bytes", "max_batch_events", "client_header_timeout_seconds",
                 "client_body_timeout_seconds", "send_timeout_seconds", "http_port",
                 "https_port"):
        if getattr(production, name) < 1:
            raise ConfigError(f"{name} must be 1 or more.")
    for name in ("connections_per_address", "stream_connect_rate", "stream_connect_burst"):
        if getattr(production, name) < 0:
            raise ConfigError(f"{name} must be 0 (no limit) or more.")


def _listen(address: str, port: int, options: str) -> str:
    """``listen`` lines: one for an address; for every address, IPv4 and IPv6."""
    targets = [f"{address}:{port}"] if address else [str(port), f"[::]:{port}"]
    return "\n".join(f"        listen {target}{options};" for target in targets)


def _servers(nodes: tuple[str, ...]) -> str:
    # A node that fails 3 times is left alone for 10 s; its streams reconnect to the others.
    return "\n".join(f"        server {node} max_fails=3 fail_timeout=10s;" for node in nodes)


def _temp_paths(temp_dir: str) -> str:
    if not temp_dir:
        return "    # temp paths: the distribution's defaults"
    return "\n".join(
        f"    {module}_temp_path {temp_dir}/{module};"
        for module in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
