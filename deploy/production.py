"""``python -m eventgate.deploy.production render``: the production supervisor and nginx files.

The development stack (deploy/stack.py) runs everything under one supervisord on loopback;
production splits it: app nodes run ``/etc/supervisor/conf.d/eventgate.conf`` (the web and
stream pools; Redis and nginx are the distribution's services), and an edge runs nginx with an
upstream of every stream node and every web node. docs/deploy.md walks through it.

``python -m eventgate.deploy.production render --out DIR --server-name NAME
--stream-node HOST:PORT …``
writes ``DIR/supervisor/eventgate.conf``, ``DIR/nginx/nginx.conf``,
``DIR/nginx/eventgate-proxy.conf`` and ``DIR/nginx/eventgate-errors.conf`` from the templates
installed with the package (no checkout needed). The rendering itself, and the Production
settings it takes, are in deploy/render.py; tests/ops/test_production_nginx.py and
tests/ops/test_production_render.py check the files with ``nginx -t`` and supervisor's own
parser, and tests/ops/test_production_edge.py runs the edge nginx on loopback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from eventgate.deploy.render import EDGE_LIMITS, Production, render_production
from eventgate.shared.errors import ConfigError


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
    render.add_argument("--venv", default=Production.venv,
                        help='the virtualenv eventgate[server] is installed into (default: '
                             f'{Production.venv})')
    render.add_argument("--var-dir", default=Production.var_dir)
    render.add_argument("--log-dir", default=Production.log_dir)
    render.add_argument("--user", default=Production.user, help="the user the pools run as")
    render.add_argument("--web-workers", type=int, default=Production.web_workers)
    render.add_argument("--stream-workers", type=int, default=Production.stream_workers)
    render.add_argument("--worker-streams", type=int, default=Production.worker_streams)
    render.add_argument("--listen-address", default=Production.listen_address,
                        help="the edge's address (default: every IPv4 and IPv6 address)")
    render.add_argument("--http-port", type=int, default=Production.http_port)
    render.add_argument("--https-port", type=int, default=Production.https_port)
    render.add_argument("--outbox-relay", action="store_true",
                        help="run `eventgate relay` on the app nodes (set EVENTGATE_OUTBOX_URL "
                             "in their eventgate.env)")
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
        bind_address=args.bind_address, venv=args.venv, var_dir=args.var_dir,
        log_dir=args.log_dir, user=args.user, web_workers=args.web_workers,
        stream_workers=args.stream_workers, worker_streams=args.worker_streams,
        listen_address=args.listen_address, http_port=args.http_port,
        https_port=args.https_port, cors_origins=tuple(args.cors_origin),
        outbox_relay=args.outbox_relay,
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
