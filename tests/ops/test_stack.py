"""The whole stack as deployed: supervisord runs redis, web, stream and nginx from the rendered
templates, and every request here goes through nginx, the public entry."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import time
from pathlib import Path

import pytest

from eventgate.shared.tokens import ChannelTokens
from tests.clients import StreamClient, stream_path
from tests.servers import wait_for
from tests.stack import http_get

pytestmark = pytest.mark.stack(stream_workers=2, settings={"EVENTGATE_HEARTBEAT": "1"})

PROGRAMS = ("nginx", "redis", "stream", "web")


def publish(stack, channel: str, data: object) -> str:
    status, _, body = stack.post("/api/events", {"channel": channel, "data": data})
    assert status == 201, body
    return json.loads(body)["id"]


def gunicorn_config(stack, name: str) -> dict:
    """The effective settings of one pool, asked over its own control socket."""
    control = stack.var_dir / "run" / f"{name}.ctl"
    wait_for(control.exists, 15, f"{control}")
    result = subprocess.run(
        [str(Path(sys.executable).parent / "gunicornc"), "-s", str(control), "-c", "show config",
         "-j"],
        capture_output=True, text=True, timeout=30, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout)


def test_every_program_runs(stack):
    def all_running():
        lines = stack.supervisorctl("status").stdout.splitlines()
        return sorted(line.split()[0] for line in lines if " RUNNING " in line) == list(PROGRAMS)

    wait_for(all_running, 15, "every program RUNNING")


def test_stream_master_imports_nothing_before_the_workers_patch(stack):
    # A master that imported gevent/redis/ssl before the fork makes the worker's monkey-patching
    # warn and leaves unpatched objects behind (reliability.md R-PY-2).
    assert "MonkeyPatchWarning" not in stack.log("stream")


def test_health_answers_through_nginx(stack):
    status, headers, body = http_get(stack.url("/healthz"))
    assert status == 200, body
    status, headers, body = http_get(stack.url("/streams/healthz"))
    assert status == 200, body
    assert headers["Content-Type"].startswith("application/json")


# nginx's internal URI for a request line too long is no page either: its 404 is JSON too.
@pytest.mark.parametrize("path", ["/metrics", "/metrics/", "/streams/metrics",
                                  "/.eventgate/uri-too-long"])
def test_metrics_are_not_public(stack, path):
    status, headers, body = http_get(stack.url(path))
    assert status == 404
    assert headers["Content-Type"].startswith("application/json")
    answer = json.loads(body)
    assert answer["error"] == "not_found" and answer["message"]


def test_redis_keeps_an_append_only_file(stack):
    client = stack.redis()
    assert client.config_get("appendonly") == {"appendonly": "yes"}
    assert client.config_get("appendfsync") == {"appendfsync": "everysec"}
    assert client.config_get("save") == {"save": ""}
    assert client.config_get("dir")["dir"] == str(stack.var_dir.resolve() / "redis")


def test_each_pool_answers_on_its_own_control_socket(stack):
    web = gunicorn_config(stack, "web")
    stream = gunicorn_config(stack, "stream")
    assert web["control_socket"] != stream["control_socket"]
    assert web["bind"] == [f"127.0.0.1:{stack.web_port}"]
    assert stream["bind"] == [
        f"127.0.0.1:{stack.stream_port}", f"unix:{stack.var_dir.resolve()}/run/stream.sock"
    ]
    assert "eventgate.web.worker.WebWorker" in web["worker_class"]  # gthread, see the module
    # The effective stream settings, stream/gunicorn_conf.py included.
    assert "eventgate.stream.worker.StreamWorker" in stream["worker_class"]  # gevent's
    assert stream["workers"] == stack.stream_workers
    assert stream["max_requests"] == 0
    assert stream["preload_app"] is False
    assert stream["keepalive"] == 0


def test_event_reaches_a_stream_through_nginx_at_once(stack):
    channel = f"ops.{secrets.token_hex(4)}"
    token, _ = ChannelTokens(stack.config.secret_keys).issue([channel])
    # Accept-Encoding: gzip must not make nginx compress (and so hold back) the stream.
    client = StreamClient(stack.port, stream_path(token), {"Accept-Encoding": "gzip"}).start()
    try:
        assert client.status == 200, client.head_raw
        assert client.response_headers["content-type"].startswith("text/event-stream")
        assert "content-encoding" not in client.response_headers
        # nginx honours the pool's header (no buffering, below) and passes it on, for a proxy
        # in front of it (an ingress, a CDN)
        assert client.response_headers.get("x-accel-buffering") == "no", client.head_raw
        wait_for(lambda: client.parser.retry is not None, 10, "the stream's retry: line")
        marker = secrets.token_hex(8)
        started = time.monotonic()
        publish(stack, channel, {"marker": marker})
        wait_for(lambda: any(marker in event.data for event in client.events), 5,
                 "the published event")
        assert time.monotonic() - started < 1.0
    finally:
        client.close()


def test_tokens_never_reach_the_logs(stack):
    stream_secret = f"secretvalue{secrets.token_hex(8)}"
    web_secret = f"secretvalue{secrets.token_hex(8)}"
    stream_id, web_id = f"ops-{secrets.token_hex(6)}", f"ops-{secrets.token_hex(6)}"
    status, _, _ = http_get(stack.url(f"/streams?token={stream_secret}&channel=a"),
                            {"X-Request-ID": stream_id})
    assert status == 401
    status, _, _ = http_get(stack.url(f"/healthz?token={web_secret}"), {"X-Request-ID": web_id})
    assert status == 200

    wait_for(lambda: stream_id in stack.log("nginx-access"), 10, "the stream request logged")
    wait_for(lambda: web_id in stack.log("nginx-access") and web_id in stack.log("web"), 10,
             "the web request logged by nginx and gunicorn")
    assert '"GET /streams HTTP/1.1" 401' in stack.log("nginx-access")
    assert '"GET /healthz HTTP/1.1" 200' in stack.log("web")
    for path in sorted((stack.var_dir / "log").glob("*.log*")):
        text = path.read_text(errors="replace")
        assert stream_secret not in text and web_secret not in text, f"a token is in {path.name}"


def test_hup_reload_refuses_nothing(stack):
    """`make reload` (HUP to both pools): new workers, same sockets, no failed request."""
    result = stack.supervisorctl("signal", "HUP", "web", "stream")
    assert result.returncode == 0, result.stdout + result.stderr
    failures = []
    deadline = time.monotonic() + 4
    while time.monotonic() < deadline:
        for path in ("/healthz", "/streams/healthz"):
            status, _, body = http_get(stack.url(path))
            if status != 200:
                failures.append((path, status, body[:200]))
        time.sleep(0.05)  # on purpose: requests all through the reload, not in a burst
    assert not failures
    assert "stream" in stack.supervisorctl("status").stdout


@pytest.mark.parametrize("path", ["/streams", "/streams/healthz", "/streams/readyz", "/x",
                                  "/metrics", "/metrics/x", "/streams/metrics"])
def test_oversized_body_is_a_json_413_everywhere(stack, path):
    # A location with its own error_page loses the server's: each must repeat the JSON 413
    # (the proxied ones through eventgate-proxy.conf), or set none (the metrics paths' 404).
    import http.client

    from eventgate.shared.config import max_request_bytes

    conn = http.client.HTTPConnection("127.0.0.1", stack.port, timeout=10)
    conn.putrequest("POST", path)
    conn.putheader("Content-Type", "application/json")
    conn.putheader("Content-Length", str(max_request_bytes(stack.config) + 1))
    conn.endheaders()
    response = conn.getresponse()
    body = response.read()
    conn.close()
    assert response.status == 413
    answer = json.loads(body)
    assert answer["error"] == "content_too_large" and answer["message"]
