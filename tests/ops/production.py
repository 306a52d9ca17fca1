"""The production templates rendered for loopback (every path under a temporary directory, so
nginx runs as anyone), what the tests read back from them, and the rendered edge run for real:
nginx in front of an echo web node (what nginx passed on; ``/hold`` keeps a request open)."""

from __future__ import annotations

import contextlib
import getpass
import grp
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from supervisor.options import ServerOptions

from eventgate.deploy.render import Production, render_production
from eventgate.shared.config import ENV_FILE_NAME, Config, max_request_bytes
from tests.clients import Answer, build, connect, read_answer
from tests.ops.configs import blocks, nginx_block, supervisor_options, with_includes
from tests.servers import LOOPBACK, Program, free_port, port_open, wait_for
from tests.testca import LocalCA

#: A clean PATH for nginx (no venv, no user directories).
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
ORIGIN = "https://app.example.test"
#: How long the echo node holds a ``/hold`` request at most.
HOLD_SECONDS = 30.0


def loopback_production(tmp_path: Path, **overrides) -> Production:
    """Loopback nodes and every path under tmp_path, so that nginx can run as anyone; a
    self-signed certificate unless ``overrides`` name one (``tls_certificate``…)."""
    if "tls_certificate" not in overrides:
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
             "-subj", "/CN=eventgate.test", "-keyout", str(tmp_path / "tls.key"),
             "-out", str(tmp_path / "tls.crt")],
            check=True, capture_output=True, timeout=60,
        )
    for name in ("nginx-log", "nginx-run", "nginx-temp", "log"):
        (tmp_path / name).mkdir()
    settings = dict(
        server_name="eventgate.test",
        stream_nodes=("127.0.0.1:18001", "127.0.0.2:18001", "127.0.0.3:18001"),
        web_nodes=("127.0.0.1:18000", "127.0.0.2:18000"),
        tls_certificate=str(tmp_path / "tls.crt"),
        tls_certificate_key=str(tmp_path / "tls.key"),
        venv=str(tmp_path / "venv"),
        var_dir=str(tmp_path / "var"), log_dir=str(tmp_path / "log"),
        user=getpass.getuser(), bind_address="127.0.0.1",
        nginx_user=f"{getpass.getuser()} {grp.getgrgid(os.getegid()).gr_name}",
        nginx_log_dir=str(tmp_path / "nginx-log"), nginx_run_dir=str(tmp_path / "nginx-run"),
        nginx_conf_dir=str(tmp_path / "out" / "nginx"),
        nginx_temp_dir=str(tmp_path / "nginx-temp"),
    )
    return Production(**{**settings, **overrides})


def require_nginx() -> None:
    """Fail (never skip) without the system's nginx: ``make test`` installs it
    (deploy/system-deps.sh), so a skip could only hide the edge's tests."""
    if shutil.which("nginx", path=PATH) is None:
        pytest.fail("nginx is missing: run `make test-deps` (or apt-get install nginx-light)")


def curl_http2() -> str:
    """The path of a curl that speaks HTTP/2; fails (never skips) without one: ``make test``
    installs Debian's curl, built with nghttp2 (deploy/system-deps.sh --test)."""
    curl = shutil.which("curl")
    if curl is None:
        pytest.fail("curl is missing: run `make test-deps` (or apt-get install curl)")
    features = subprocess.run([curl, "-V"], capture_output=True, text=True, check=False).stdout
    if "HTTP2" not in features.split():
        pytest.fail(f"{curl} lacks HTTP/2 (no nghttp2): install Debian's curl")
    return curl


def served_by(ca: LocalCA) -> dict[str, str]:
    """The Production settings that make the edge serve ``ca``'s leaf certificate."""
    return {"tls_certificate": str(ca.leaf_certificate),
            "tls_certificate_key": str(ca.leaf_key)}


def rendered(production: Production, out: Path) -> str:
    """The edge's nginx.conf with every ``include`` replaced by the rendered file it names."""
    render_production(production, out)
    return with_includes((out / "nginx" / "nginx.conf").read_text())


def edge_servers(text: str) -> tuple[str, str]:
    """(the plain HTTP server, the HTTPS one)."""
    http_block = nginx_block(text, "http")
    plain, tls = blocks(http_block, "server")
    assert "ssl_certificate" in tls and "ssl_certificate" not in plain
    return plain, tls


def app_config(program_environment: dict[str, str], var_dir: str) -> Config:
    """The Config an app node builds from its rendered environment, over an eventgate.env that
    tries to set the shared settings otherwise (the rendered environment must win)."""
    env_file = Path(var_dir) / ENV_FILE_NAME
    env_file.parent.mkdir(parents=True, exist_ok=True)
    env_file.write_text(
        f"EVENTGATE_SECRET_KEY={secrets.token_urlsafe(32)}\n"
        f"EVENTGATE_PUBLISH_KEY={secrets.token_urlsafe(32)}\n"
        "EVENTGATE_MAX_EVENT_BYTES=999999\nEVENTGATE_MAX_BATCH_EVENTS=1\n"
        "EVENTGATE_CORS_ORIGINS=https://elsewhere.example.test\n"
    )
    return Config.from_env(program_environment)


def conf_d_options(production: Production, tmp_path: Path) -> ServerOptions:
    """Render into ``tmp_path/out`` and read the conf.d file as supervisor does: included from a
    minimal supervisord.conf, as on an app node."""
    render_production(production, tmp_path / "out")
    main_conf = tmp_path / "supervisord.conf"
    main_conf.write_text(
        "[supervisord]\n"
        f"logfile={tmp_path}/supervisord.log\npidfile={tmp_path}/supervisord.pid\n"
        "minfds=1024\n"
        f"[include]\nfiles={tmp_path}/out/supervisor/*.conf\n"
    )
    return supervisor_options(main_conf)


def conf_d_programs(production: Production, tmp_path: Path) -> dict:
    """Program name -> supervisor's config of it, from the rendered conf.d file."""
    options = conf_d_options(production, tmp_path)
    return {p.name: p for group in options.process_group_configs for p in group.process_configs}


class Echo(ThreadingHTTPServer):
    """The web node: answers every request with JSON of what it received; ``/hold`` waits until
    ``release`` is set (a long request that keeps its client connection busy)."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__((LOOPBACK, 0), _EchoHandler)
        self.release = threading.Event()
        self.held = 0
        self.lock = threading.Lock()

    def handle_error(self, request, client_address) -> None:  # noqa: ANN001
        pass  # nginx closing a held upstream connection is no error here


class _EchoHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Echo

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if self.path.startswith("/hold"):
            with self.server.lock:
                self.server.held += 1
            self.server.release.wait(HOLD_SECONDS)
            with self.server.lock:
                self.server.held -= 1
        answer = json.dumps({
            "path": self.path, "body_bytes": len(body),
            "x-request-id": self.headers.get("X-Request-ID"),
        }).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    do_GET = do_POST = _answer

    def log_message(self, *args) -> None:  # quiet
        pass


@dataclass
class Edge:
    """The rendered production edge, running: nginx over TLS on loopback ports."""

    production: Production
    echo: Echo
    nginx: Program
    #: The CA whose leaf the edge serves: ``open`` verifies the certificate against it (without
    #: one, the edge's certificate is self-signed and taken unverified).
    ca: LocalCA | None = None

    @property
    def port(self) -> int:
        return self.production.https_port

    @property
    def body_limit(self) -> int:
        return max_request_bytes(self.production)  # a Production has the fields it reads

    def send(self, data: bytes, source: str = LOOPBACK, port: int | None = None) -> Answer:
        """Send raw bytes over TLS (or plain HTTP to ``port``) and read the whole answer."""
        with self.open(source, port) as sock:
            sock.sendall(data)
            return read_answer(sock, whole_stream=True)

    def request(self, method: str, target: str, headers: dict | None = None,
                body: bytes = b"", source: str = LOOPBACK, port: int | None = None) -> Answer:
        return self.send(build(method, target, port or self.port, headers, body), source, port)

    def open(self, source: str = LOOPBACK, port: int | None = None) -> socket.socket:
        raw = connect(port or self.port, source)
        if port is not None:
            return raw
        if self.ca is not None:
            return self.ca.client_context().wrap_socket(raw, server_hostname=LOOPBACK)
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context.wrap_socket(raw, server_hostname="eventgate.test")

    def logs(self, source: str) -> str:
        """Both nginx logs, once the access log has a last request from ``source`` (the workers
        buffer it: a reopen, or the 5 s flush, writes it out)."""
        marker = f"/marker-{secrets.token_hex(8)}"
        self.request("GET", marker, source=source)
        log_dir = Path(self.production.nginx_log_dir)
        self.nginx.signal(signal.SIGUSR1)  # reopen, which flushes the buffer
        wait_for(lambda: marker in (log_dir / "access.log").read_text(errors="replace"), 15,
                 "the access log to be flushed")
        return "".join((log_dir / name).read_text(errors="replace")
                       for name in ("access.log", "error.log"))


@dataclass
class StackEdge:
    """The rendered production edge, running in front of a real stack's pools (tests/stack.py):
    its certificate the test CA's leaf (tests/testca.py)."""

    production: Production
    nginx: Program

    def url(self, path: str = "/") -> str:
        """An HTTPS URL through the edge (the leaf certificate's name: 127.0.0.1)."""
        return f"https://{LOOPBACK}:{self.production.https_port}{path}"


class StreamNode(ThreadingHTTPServer):
    """A stream node answering as the stream pool does (text/event-stream, X-Accel-Buffering:
    no, no length): one event at once, the next once ``release`` is set, then the end."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__((LOOPBACK, 0), _StreamHandler)
        self.release = threading.Event()


class _StreamHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"  # the body ends when the connection does
    server: StreamNode

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("X-Accel-Buffering", "no")
        self.end_headers()
        self.wfile.write(b"data: first\n\n")
        self.wfile.flush()
        self.server.release.wait(HOLD_SECONDS)
        self.wfile.write(b"data: second\n\n")

    def log_message(self, *args) -> None:  # quiet
        pass


@contextlib.contextmanager
def running_edge(tmp: Path, ca: LocalCA | None = None, **settings) -> Iterator[Edge]:
    """The edge rendered for loopback with ``settings`` (its web node an Echo), run by the
    system's nginx until the block ends; it serves ``ca``'s leaf certificate when given."""
    echo = Echo()
    threading.Thread(target=echo.serve_forever, daemon=True).start()
    if ca is not None:
        settings.update(served_by(ca))
    try:
        with edge_nginx(tmp, web_nodes=(f"{LOOPBACK}:{echo.server_address[1]}",),
                        **settings) as (production, nginx):
            try:
                yield Edge(production, echo, nginx, ca)
            finally:
                echo.release.set()  # before nginx stops: no held request in its way
    finally:
        echo.release.set()
        echo.shutdown()
        echo.server_close()


@contextlib.contextmanager
def edge_nginx(tmp: Path, **settings) -> Iterator[tuple[Production, Program]]:
    """The production edge rendered for loopback with ``settings`` (its own free ports), run by
    the system's nginx until the block ends: (its Production, the nginx Program)."""
    require_nginx()
    production = loopback_production(
        tmp, listen_address=LOOPBACK, http_port=free_port(), https_port=free_port(),
        streams_per_nginx_worker=256, **settings,
    )
    render_production(production, tmp / "out")
    nginx = Program(
        ["nginx", "-c", tmp / "out" / "nginx" / "nginx.conf", "-p", production.nginx_temp_dir,
         "-g", "daemon off;"],
        tmp / "nginx.out", port=production.https_port, env={"PATH": PATH},
    ).start()
    try:
        nginx.wait_until(lambda: port_open(production.https_port)
                         and port_open(production.http_port), 15, "the edge nginx to listen")
        yield production, nginx
    finally:
        nginx.stop()
