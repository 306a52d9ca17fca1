"""nginx in the benchmark: nchan (nginx's C pub/sub module, the comparison), and the stack's own
nginx config in front of a stream worker (the full path, as users deploy it).

The full path's config is rendered by deploy/render.py from deploy/nginx/nginx.conf.tmpl, the
file ``make up`` runs, never copied by hand: a change to the /streams location shows here. Only
the per-address limits are off (every load connection comes from 127.0.0.1). nchan gets what
it needs to be compared fairly: the same ``worker_processes``, the same timeouts, a message
buffer as deep as eventgate's resume window, and new subscribers starting at the newest
message (as an EventSource without a cursor does on eventgate).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

NCHAN_MODULE = Path("/usr/lib/nginx/modules/ngx_nchan_module.so")

NCHAN_CONF = """\
load_module {module};
worker_processes auto;
worker_rlimit_nofile 40000;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 20000; }}
http {{
    access_log off;
    tcp_nodelay on;
    client_body_temp_path {prefix}/tmp;
    proxy_temp_path {prefix}/tmp;
    fastcgi_temp_path {prefix}/tmp;
    uwsgi_temp_path {prefix}/tmp;
    scgi_temp_path {prefix}/tmp;
    nchan_shared_memory_size 256M;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location = /healthz {{ return 200 '{{"ok": true}}'; }}
        location = /sub {{
            nchan_subscriber eventsource;
            nchan_channel_id $arg_channel;
            nchan_subscriber_first_message newest;
            nchan_eventsource_ping_interval 15;
            nchan_subscriber_timeout 0;
        }}
        location = /pub {{
            nchan_publisher;
            nchan_channel_id $arg_channel;
            nchan_message_buffer_length 1000;
            nchan_message_timeout 1h;
        }}
    }}
}}
"""


def nchan_installed() -> bool:
    return NCHAN_MODULE.exists()


def write_nchan_conf(prefix: Path, port: int) -> Path:
    (prefix / "tmp").mkdir(parents=True, exist_ok=True)
    conf = prefix / "nginx.conf"
    conf.write_text(NCHAN_CONF.format(module=NCHAN_MODULE, prefix=prefix, port=port))
    return conf


def render_full_path(var: Path, port: int, stream_port: int,
                     web_port: int) -> tuple[Path, list[str]]:
    """The stack's nginx.conf (deploy/render.py) for one stream worker on ``stream_port``, and
    the worker's gunicorn binds as the stack renders them (nginx's way in last)."""
    from eventgate.deploy.render import render_stack, stream_binds
    from eventgate.shared.config import Config

    config = Config(
        secret_keys=("bench",), publish_keys=("bench",), port=port, stream_port=stream_port,
        web_port=web_port, var_dir=var, connections_per_address=0, stream_connect_rate=0,
    )
    render_stack(config, root=var, python_bin_dir=Path(sys.executable).parent, foreground=True,
                 web_workers=1, stream_workers=1)
    return var / "conf" / "nginx.conf", stream_binds(config, var.resolve())


class Nginx:
    """One nginx master (``daemon off``) pinned to ``core``; its workers inherit the pinning."""

    def __init__(self, conf: Path, workdir: Path, core: str, name: str) -> None:
        self.log_path = workdir / f"{name}.log"
        binary = shutil.which("nginx") or "/usr/sbin/nginx"
        prefix = conf.parent
        with open(self.log_path, "ab") as log:
            self.popen = subprocess.Popen(
                ["taskset", "-c", core, binary, "-c", str(conf), "-p", str(prefix),
                 "-e", str(self.log_path), "-g", "daemon off;"],
                stdout=log, stderr=log, stdin=subprocess.DEVNULL,
            )

    def workers(self) -> list[int]:
        out = subprocess.run(["pgrep", "-P", str(self.popen.pid)], capture_output=True,
                             text=True).stdout
        return [int(p) for p in out.split()]

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)  # fast shutdown: QUIT would wait for streams
            try:
                self.popen.wait(20)
            except subprocess.TimeoutExpired:
                for pid in self.workers():
                    os.kill(pid, signal.SIGKILL)
                self.popen.kill()
                self.popen.wait(5)
