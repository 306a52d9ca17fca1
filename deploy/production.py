"""render_production(...): the production supervisor and nginx files, from deploy/production/.

The development stack (deploy/stack.py) runs everything under one supervisord on loopback;
production splits it: app nodes run ``/etc/supervisor/conf.d/eventgate.conf`` (the web and
stream pools; Redis and nginx are the distribution's services), and an edge runs nginx with an
upstream of every stream node and every web node. docs/deploy.md walks through it.

``python -m eventgate.deploy.production render --out DIR --server-name NAME
--stream-node HOST:PORT …``
writes ``DIR/supervisor/eventgate.conf``, ``DIR/nginx/nginx.conf``,
``DIR/nginx/eventgate-proxy.conf`` and ``DIR/nginx/eventgate-errors.conf``. Rendered files hold
addresses, paths and sizes, never a secret; tests/ops/test_production_configs.py renders them
with loopback addresses and checks them with ``nginx -t`` and supervisor's own parser, and
tests/ops/test_production_edge.py runs the edge nginx on loopback.

The edge's limits, timeouts and CORS origins are the development stack's
(``eventgate.deploy.stack.nginx_limits``, fed with this module's Production instead of a Config: the
fields have the same names and meanings). The request size and the CORS origins go into the app
nodes' environment too, so that the edge and the apps cannot disagree.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from eventgate.deploy.stack import (
    _render as render_template,  # one template syntax for dev and prod
)
from eventgate.deploy.stack import _supervisor_environment, nginx_limits
from eventgate.shared.config import _ORIGIN, Config
from eventgate.shared.errors import ConfigError

TEMPLATES = Path(__file__).resolve().parent / "production"
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
    root: str = "/srv/eventgate"
    venv: str = "/srv/eventgate/.venv"
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


def render_production(production: Production, out: Path) -> list[Path]:
    """Write the four files under ``out``; returns their paths. Raises ConfigError for an
    address, path or setting the config syntaxes (or the apps) cannot hold."""
    values = asdict(production)
    _check(production, values)
    connections = 2 * production.streams_per_nginx_worker
    nginx_values = {
        **{k: v for k, v in values.items() if not k.startswith("nginx_")},
        **nginx_limits(production, zone_size=production.limit_zone_size),
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
        "app_settings": _supervisor_environment(app_settings(production)),
        # One open file per stream plus a margin, for every stream worker of the node.
        "minfds": production.stream_workers * (production.worker_streams + 1024),
    }
    written = []
    for template, target, filled in (
        ("supervisor/eventgate.conf.tmpl", "supervisor/eventgate.conf", supervisor_values),
        ("nginx/nginx.conf.tmpl", "nginx/nginx.conf", nginx_values),
        ("nginx/eventgate-proxy.conf.tmpl", "nginx/eventgate-proxy.conf", nginx_values),
        ("nginx/eventgate-errors.conf.tmpl", "nginx/eventgate-errors.conf", nginx_values),
    ):
        path = out / target
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render_template(TEMPLATES / template, filled))
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
        if not _ORIGIN.fullmatch(origin):
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m eventgate.deploy.production", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    render = commands.add_parser("render", help="write the production files")
    render.add_argument("--out", type=Path, required=True)
    render.add_argument("--server-name", required=True)
    render.add_argument("--stream-node", action="append", required=True, metavar="HOST:PORT")
    render.add_argument("--web-node", action="append", required=True, metavar="HOST:PORT")
    render.add_argument("--tls-certificate", required=True)
    render.add_argument("--tls-certificate-key", required=True)
    render.add_argument("--bind-address", default=Production.bind_address)
    render.add_argument("--web-workers", type=int, default=Production.web_workers)
    render.add_argument("--stream-workers", type=int, default=Production.stream_workers)
    render.add_argument("--worker-streams", type=int, default=Production.worker_streams)
    render.add_argument("--listen-address", default=Production.listen_address,
                        help="the edge's address (default: every IPv4 and IPv6 address)")
    render.add_argument("--http-port", type=int, default=Production.http_port)
    render.add_argument("--https-port", type=int, default=Production.https_port)
    render.add_argument("--cors-origin", action="append", default=[], metavar="ORIGIN",
                        help="an origin allowed to open streams cross-origin (repeatable)")
    # Same meaning as EVENTGATE_<NAME> (docs/security.md, "Limits"): --max-event-bytes, …,
    # --client-header-timeout (seconds), …
    numbers = ("max_event_bytes", "max_batch_events", *EDGE_LIMITS)
    for name in numbers:
        option = "--" + name.removesuffix("_seconds").replace("_", "-")
        render.add_argument(option, dest=name, type=int, default=getattr(Production, name))
    args = parser.parse_args(argv)
    production = Production(
        server_name=args.server_name, stream_nodes=tuple(args.stream_node),
        web_nodes=tuple(args.web_node), tls_certificate=args.tls_certificate,
        tls_certificate_key=args.tls_certificate_key,
        bind_address=args.bind_address, web_workers=args.web_workers,
        stream_workers=args.stream_workers, worker_streams=args.worker_streams,
        listen_address=args.listen_address, http_port=args.http_port,
        https_port=args.https_port, cors_origins=tuple(args.cors_origin),
        **{name: getattr(args, name) for name in numbers},
    )
    try:
        for path in render_production(production, args.out):
            print(path)
    except ConfigError as error:
        print(f"eventgate: {error.message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
