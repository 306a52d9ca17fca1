"""render_production(...): the production supervisor and nginx files, from deploy/production/.

The development stack (shared/deploy.py) runs everything under one supervisord on loopback;
production splits it: app nodes run ``/etc/supervisor/conf.d/eventgate.conf`` (the web and
stream pools; Redis and nginx are the distribution's services), and an edge runs nginx with an
upstream of every stream node and every web node. docs/deploy.md walks through it.

``python -m shared.production render --out DIR --server-name NAME --stream-node HOST:PORT …``
writes ``DIR/supervisor/eventgate.conf``, ``DIR/nginx/nginx.conf`` and
``DIR/nginx/eventgate-proxy.conf``. Rendered files hold addresses, paths and sizes, never a
secret; tests/ops/test_production_configs.py renders them with loopback addresses and checks
them with ``nginx -t`` and supervisor's own parser.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from shared.deploy import _render as render_template  # one template syntax for dev and prod
from shared.errors import ConfigError

TEMPLATES = Path(__file__).resolve().parent.parent / "deploy" / "production"
_ADDRESS = re.compile(r"^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):[0-9]{1,5}$")
_SAFE = re.compile(r"^[\w./@+:-]+$")


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
    nginx_user: str = "www-data"
    nginx_log_dir: str = "/var/log/nginx"
    nginx_run_dir: str = "/run"
    nginx_conf_dir: str = "/etc/nginx"
    nginx_temp_dir: str = ""
    streams_per_nginx_worker: int = 32768
    stream_connect_rate: int = 50
    stream_connect_burst: int = 1000


def render_production(production: Production, out: Path) -> list[Path]:
    """Write the three files under ``out``; returns their paths. Raises ConfigError for an
    address or path the config syntaxes cannot hold."""
    values = asdict(production)
    for name in ("stream_nodes", "web_nodes"):
        if not values[name]:
            raise ConfigError(f"{name}: name at least one HOST:PORT.")
        for node in values[name]:
            if not _ADDRESS.match(node):
                raise ConfigError(f"{node!r} is not HOST:PORT.")
    for name, value in values.items():
        if name == "nginx_user":  # "user" or "user group"
            value = value.replace(" ", ":", 1)
        if isinstance(value, str) and value and not _SAFE.match(value):
            raise ConfigError(f"{name} holds characters the rendered configs cannot quote.")
    connections = 2 * production.streams_per_nginx_worker
    nginx_values = {
        **{k: v for k, v in values.items() if not k.startswith("nginx_")},
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
        # One open file per stream plus a margin, for every stream worker of the node.
        "minfds": production.stream_workers * (production.worker_streams + 1024),
    }
    written = []
    for template, target, filled in (
        ("supervisor/eventgate.conf.tmpl", "supervisor/eventgate.conf", supervisor_values),
        ("nginx/nginx.conf.tmpl", "nginx/nginx.conf", nginx_values),
        ("nginx/eventgate-proxy.conf.tmpl", "nginx/eventgate-proxy.conf", nginx_values),
    ):
        path = out / target
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render_template(TEMPLATES / template, filled))
        written.append(path)
    return written


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
    parser = argparse.ArgumentParser(prog="python -m shared.production", description=__doc__,
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
    args = parser.parse_args(argv)
    production = Production(
        server_name=args.server_name, stream_nodes=tuple(args.stream_node),
        web_nodes=tuple(args.web_node), tls_certificate=args.tls_certificate,
        tls_certificate_key=args.tls_certificate_key,
        bind_address=args.bind_address, web_workers=args.web_workers,
        stream_workers=args.stream_workers, worker_streams=args.worker_streams,
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
