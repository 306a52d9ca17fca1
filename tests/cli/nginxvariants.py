"""Second nginx servers in front of a running Stack's pools, each from an edited copy of the
stack's own rendered nginx.conf: the deliberately broken proxies ``eventgate doctor`` must
catch, and one over TLS. Each edit must match the rendered text exactly once, so a
template change fails the test that relies on it instead of silently testing nothing."""

from __future__ import annotations

from pathlib import Path

from tests.servers import Program, free_port, port_open
from tests.stack import Stack

#: (old, new) replacements in the rendered nginx.conf.
Edits = tuple[tuple[str, str], ...]

BUFFERING_ON = (
    ("proxy_buffering off;",
     # The pool's X-Accel-Buffering: no would turn it off again, as a CDN ignoring it would not.
     "proxy_buffering on; proxy_ignore_headers X-Accel-Buffering;"),
)
#: The stack runs with EVENTGATE_HEARTBEAT=2: its first comment comes 1–2 s after the stream
#: opens (stream/hub.py beats every half period), so 800 ms of read timeout always cuts an idle
#: stream first — as nginx's 5 s would cut one under the default 15 s heartbeat (7.5–15 s).
SHORT_READ_TIMEOUT = (("proxy_read_timeout 1h;", "proxy_read_timeout 800ms;"),)
LAST_EVENT_ID_DROPPED = (
    ("proxy_buffering off;", 'proxy_buffering off; proxy_set_header Last-Event-ID "";'),
)
GZIP_ON = (("gzip off;", "gzip on; gzip_types text/event-stream; gzip_min_length 1;"),)
NO_RETRY_FALLBACK = (("error_page 502 503 504 = @stream_unavailable;", ""),)


def pool_down(stack: Stack) -> Edits:
    """The stream pool's upstream (its Unix socket, and its port as the backup) moved to a port
    nothing listens on: the pool as if stopped."""
    socket_path = stack.var_dir.resolve() / "run" / "stream.sock"
    return ((f"server unix:{socket_path} max_fails=0;", f"server 127.0.0.1:{free_port()};"),
            (f"server 127.0.0.1:{stack.stream_port} backup max_fails=0;", ""))


def tls(certificate: Path, key: Path) -> Edits:
    """A certificate for the server (its listen line takes ``ssl``: ``listen_options``)."""
    return (("server_name _;",
             f"server_name _; ssl_certificate {certificate}; ssl_certificate_key {key};"),)


def variant_conf(stack: Stack, directory: Path, port: int, edits: Edits,
                 listen_options: str = "") -> str:
    """The stack's nginx.conf listening on ``port`` with its own pid, logs and temp files under
    ``directory``, and ``edits`` applied."""
    text = (stack.var_dir / "conf" / "nginx.conf").read_text()
    var = str(stack.var_dir)
    moves = (
        (f"listen 127.0.0.1:{stack.port};", f"listen 127.0.0.1:{port}{listen_options};"),
        (f"pid {var}/run/nginx.pid;", f"pid {directory}/nginx.pid;"),
    )
    for old, new in (*moves, *edits):
        found = text.count(old)
        assert found == 1, f"{old!r} is in the rendered nginx.conf {found} times, not once"
        text = text.replace(old, new)
    return text.replace(f"{var}/log/", f"{directory}/").replace(f"{var}/nginx/", f"{directory}/")


def start_variant(stack: Stack, directory: Path, edits: Edits,
                  listen_options: str = "") -> Program:
    """nginx from ``variant_conf`` on a free port (``Program.port``), once it listens."""
    directory.mkdir(parents=True)
    port = free_port()
    conf = directory / "nginx.conf"
    conf.write_text(variant_conf(stack, directory, port, edits, listen_options))
    nginx = Program(
        [_nginx(stack), "-c", conf, "-p", directory, "-g", "daemon off;"],
        directory / "nginx.out", port=port,
    ).start()
    nginx.wait_until(lambda: port_open(port), 15, f"the {directory.name} nginx to listen")
    return nginx


def _nginx(stack: Stack) -> str:
    """The nginx binary the stack's supervisord runs."""
    supervisord = stack.conf.read_text()
    command = next(line for line in supervisord.splitlines()
                   if line.startswith("command=") and " -p " in line and "nginx" in line)
    return command.removeprefix("command=").split()[0]
