"""render_stack(config): the supervisord and nginx configs of one stack, from deploy/ templates.

The stack (``make run``/``make up``) and the tests render the same templates, so what is tested is
what is deployed. Rendered files hold paths, ports and settings, never a secret: the apps read
secrets from ``<var>/eventgate.env`` (or the environment they inherit).

``python -m eventgate.deploy.stack init|render|wait-healthy|wait-stopped`` is what the Makefile
runs.
"""

from __future__ import annotations

import argparse
import grp
import os
import pwd
import re
import resource
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from string import Template
from typing import Protocol
from urllib.parse import urlsplit

from eventgate.shared.config import Config, var_dir_from_env, write_dev_env
from eventgate.shared.errors import ConfigError
from eventgate.shared.requestsize import max_request_bytes

# Package data: found beside this module, in a checkout and in an installed wheel alike.
TEMPLATES = Path(__file__).resolve().parent
SUPERVISOR_TEMPLATE = TEMPLATES / "supervisor" / "supervisord.conf.tmpl"
NGINX_TEMPLATE = TEMPLATES / "nginx" / "nginx.conf.tmpl"
RUNTIME_DIRS = ("conf", "run", "log", "redis", "nginx")

#: Open files wanted for supervisord and its children; lowered to the hard limit when not root.
WANTED_FDS = 20000
NGINX_CONNECTIONS_PER_WORKER = 8192

#: Config field -> the EVENTGATE_* variable Config.from_env reads it from. Secrets are absent on
#: purpose; a test checks that every other field is here, so a new setting cannot be forgotten.
ENV_NAMES = {
    "redis_url": "REDIS_URL",
    "port": "PORT",
    "web_port": "WEB_PORT",
    "stream_port": "STREAM_PORT",
    "redis_port": "REDIS_PORT",
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

    A Redis URL with a password is left out: the apps then read it where it came from
    (``eventgate.env`` or the environment supervisord inherits)."""
    env: dict[str, str] = {}
    for field_name, name in ENV_NAMES.items():
        value = getattr(config, field_name)
        if isinstance(value, tuple):  # lists are comma-separated, as Config.from_env reads them
            value = ",".join(value)
        if field_name == "var_dir":
            value = var
        if field_name == "redis_url" and urlsplit(str(value)).password:
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
    """Write ``<var>/conf/supervisord.conf`` and ``<var>/conf/nginx.conf``; return the first.

    ``root`` is the checkout the programs run in; ``python_bin_dir`` holds its venv's gunicorn.
    Creates the runtime dirs. Raises ConfigError for a path that the config syntaxes cannot hold.
    """
    root = root.resolve()
    var = resolve_var_dir(config, root)
    for path in (root, var, python_bin_dir):
        if not _SAFE_PATH.match(str(path)):
            raise ConfigError(f"{path} holds characters the rendered configs cannot quote.")
    for name in RUNTIME_DIRS:
        (var / name).mkdir(parents=True, exist_ok=True)
    fds = _open_files_limit()
    worker_connections = min(NGINX_CONNECTIONS_PER_WORKER, fds // 2)
    supervisor_values = {
        "root": root,
        "var": var,
        "python_bin": python_bin_dir,
        "nodaemon": "true" if foreground else "false",
        "minfds": fds,
        "redis_server": _program("redis-server", "/usr/bin/redis-server"),
        "nginx_bin": _program("nginx", "/usr/sbin/nginx"),
        "redis_port": config.redis_port,
        "web_port": config.web_port,
        "stream_port": config.stream_port,
        "web_workers": web_workers,
        "stream_workers": stream_workers,
        "app_environment": _supervisor_environment(app_environment(config, var)),
    }
    nginx_values = {
        "var": var,
        "port": config.port,
        "web_port": config.web_port,
        "stream_port": config.stream_port,
        "user_directive": _nginx_user_directive(),
        "worker_connections": worker_connections,
        "worker_rlimit_nofile": 2 * worker_connections,
        "extra_temp_paths": _nginx_extra_temp_paths(var, supervisor_values["nginx_bin"]),
        **nginx_limits(config),
    }
    conf = var / "conf"
    (conf / "nginx.conf").write_text(_render(NGINX_TEMPLATE, nginx_values))
    supervisord_conf = conf / "supervisord.conf"
    supervisord_conf.write_text(_render(SUPERVISOR_TEMPLATE, supervisor_values))
    return supervisord_conf


class NginxSettings(Protocol):
    """What ``nginx_limits`` reads: a Config, or deploy.production.Production (whose fields of
    these names mean the same), so that the development and production nginx agree."""

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
        # The app's own limit: nginx refuses first, with JSON (see shared/requestsize.py).
        "client_max_body_size": max_request_bytes(config),
    }


def _render(template: Path, values: dict[str, object]) -> str:
    text = _BracedTemplate(template.read_text()).substitute({k: str(v) for k, v in values.items()})
    if "${" in text:
        raise ConfigError(f"{template} has a placeholder that render_stack does not fill.")
    return text


def _supervisor_environment(env: dict[str, str]) -> str:
    for key, value in env.items():
        if any(char in value for char in '"\\\n'):
            raise ConfigError(f"{key} holds a character supervisor's environment cannot quote.")
    # supervisor expands %(name)s in environment values: double every literal '%'.
    return ",".join(f'{key}="{value.replace("%", "%%")}"' for key, value in env.items())


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


def wait_healthy(url: str, timeout_seconds: float, log_dir: Path) -> bool:
    """Poll ``url`` until it answers 200; on the deadline print why and the logs' tails."""
    deadline = time.monotonic() + timeout_seconds
    last = "no answer yet"
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return True
                last = f"HTTP {response.status}"
        except urllib.error.HTTPError as error:
            last = f"HTTP {error.code}"
        except (OSError, urllib.error.URLError) as error:
            last = str(error)
        time.sleep(0.2)
    print(f"eventgate: {url} did not answer 200 within {timeout_seconds:g}s ({last}).",
          file=sys.stderr)
    for log in sorted(log_dir.glob("*.log")):
        lines = log.read_text(errors="replace").splitlines()[-15:]
        print(f"--- {log} (last {len(lines)} lines) ---", *lines, sep="\n", file=sys.stderr)
    print("eventgate: the stack is left running for a look; `make down` stops it.", file=sys.stderr)
    return False


def wait_stopped(var: Path, timeout_seconds: float) -> bool:
    """Wait until the stack's supervisord and every process started under ``var`` are gone."""
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        left = stack_processes(var)
        if not left:
            return True
        time.sleep(0.1)
    print(f"eventgate: still running after {timeout_seconds:g}s: {left}", file=sys.stderr)
    return False


def stack_processes(var: Path) -> dict[int, str]:
    """pid -> command line of every live process whose command line names ``var`` (supervisord,
    redis, gunicorn masters and workers, the nginx master). Zombies are not counted."""
    found: dict[int, str] = {}
    needle = str(var.resolve()).encode()
    ours = _ancestors(os.getpid())  # the make recipe that runs us names var too
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in ours:
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if needle in cmdline and state != "Z":
            found[int(entry.name)] = cmdline.replace(b"\0", b" ").decode(errors="replace").strip()
    return found


def _ancestors(pid: int) -> set[int]:
    chain = {pid}
    while pid > 1:
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
        chain.add(pid)
    return chain


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eventgate.deploy.stack", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("init", help="write <var>/eventgate.env with dev secrets, once")
    render = commands.add_parser("render", help="render supervisord.conf and nginx.conf")
    render.add_argument("--foreground", action="store_true", help="nodaemon=true")
    render.add_argument("--web-workers", type=int, default=2)
    render.add_argument("--stream-workers", type=int, default=2)
    healthy = commands.add_parser("wait-healthy", help="wait for GET /healthz through nginx")
    healthy.add_argument("--timeout", type=float, default=60.0)
    stopped = commands.add_parser("wait-stopped", help="wait until no stack process is left")
    stopped.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args(argv)
    root = Path.cwd()

    # These two need no Config, which cannot exist before `init` has written the secrets.
    var = (root / var_dir_from_env()).resolve()
    if args.command == "wait-stopped":
        return 0 if wait_stopped(var, args.timeout) else 1
    if args.command == "init":
        print(write_dev_env(var))
        return 0
    config = Config.from_env()
    if args.command == "render":
        path = render_stack(
            config,
            root=root,
            python_bin_dir=Path(sys.executable).parent,
            foreground=args.foreground,
            web_workers=args.web_workers,
            stream_workers=args.stream_workers,
        )
        print(path)
        return 0
    url = f"http://127.0.0.1:{config.port}/healthz"
    log_dir = resolve_var_dir(config, root) / "log"
    return 0 if wait_healthy(url, args.timeout, log_dir) else 1


if __name__ == "__main__":
    sys.exit(main())
