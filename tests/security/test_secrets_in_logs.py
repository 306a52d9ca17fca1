"""No token and no key in any log: after sending them everywhere a log line could pick them up,
every log of every stack and pool this session started is searched for each secret used, and for
anything shaped like a stream token at all.

It runs after the package's other modules that use the secured stack (pytest runs test files in
name order), so their traffic — the catalogue, the fuzz, CORS — is searched too; on its own it
still sends every kind of request that carries a secret.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from pathlib import Path

from tests.clients import request, stream_path
from tests.servers import wait_for

#: Any stream token: base64url of a JSON object ('{"' is "eyJ"), a timestamp, a signature.
TOKEN_SHAPE = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{10,}")


def log_files(*roots: Path) -> list[Path]:
    found: set[Path] = set()
    for root in roots:
        for pattern in ("*.log", "*.log.*", "supervisord.out"):
            found.update(path for path in root.rglob(pattern) if path.is_file())
    return sorted(found)


def send_secrets_everywhere(secured, secret_register, unique) -> str:
    """Requests that carry tokens and keys into every path that logs; returns a marker sent as
    X-Request-ID on the last one (to wait for the logs to be written)."""
    port, stack = secured.port, secured.stack
    token, _ = secured.tokens.issue([f"sec.{unique}"], subject=f"logs-{unique}")
    # Key-shaped but not configured; random, so that no other test's log line matches it by chance.
    wrong_key = secrets.token_urlsafe(32)
    secret_register.add(token, wrong_key)
    auth = {"Authorization": f"Bearer {stack.publish_key}", "Content-Type": "application/json"}

    minted = request(port, "POST", "/api/tokens", auth,
                     json.dumps({"channels": [f"sec.{unique}"]}).encode())
    assert minted.status == 201
    secret_register.add(minted.json()["token"])
    sends = [
        ("GET", stream_path(token), {}),  # 200, token in the query
        ("GET", "/streams", {"Cookie": f"eventgate_token={token}"}),  # 200, token in a cookie
        ("GET", stream_path(token[:-2]), {}),  # 401 tampered
        ("GET", stream_path(token, ("other.channel",)), {}),  # 403
        ("GET", stream_path(token) + "&lastEventId=%0D", {}),  # 400 from the pool
        ("GET", stream_path(token), {"Last-Event-ID": b"\x00"}),  # 400 from nginx
        ("GET", stream_path(token) + "&pad=" + "x" * 9000, {}),  # 414 from nginx
        ("GET", stream_path(token) + "&lastEventId=" + "1" * 7000, {}),  # long, to the pool
        ("GET", f"/healthz?token={token}", {"Referer": f"http://x/streams?token={token}"}),
        ("GET", f"/api/events?token={token}", auth),  # 405 on the web app
        ("POST", "/api/events", {"Authorization": f"Bearer {wrong_key}"}),  # 401
        ("POST", "/api/events", {**auth, "Authorization": f"Bearer {secured.restricted_key}"}),
        ("POST", "/api/events", auth),  # 201
        ("OPTIONS", stream_path(token), {"Origin": "http://evil.example",
                                         "Access-Control-Request-Method": "GET"}),  # 403
    ]
    for method, target, headers in sends:
        answer = request(port, method, target, headers,
                         b'{"channel": "sec.other"}' if method == "POST" else b"")
        assert answer.status in (200, 201, 400, 401, 403, 405, 414), (target[:80], answer)
        assert token not in answer.body.decode("utf-8", "replace")
    marker = f"logs-{unique}-{int(time.time())}"
    assert request(port, "GET", stream_path(token[:-2]), {"X-Request-ID": marker}).status == 401
    return marker


def test_no_secret_in_any_log(secured, secret_register, unique, tmp_path_factory,
                              secret_keys, publish_key):
    marker = send_secrets_everywhere(secured, secret_register, unique)
    logs = secured.stack.var_dir / "log"
    wait_for(lambda: marker in (logs / "nginx-access.log").read_text(errors="replace"), 10,
             "the last request in nginx's access log")
    # The web app logs after answering: once a request after all the others is in its log, so
    # are theirs.
    last = f"{marker}-web"
    assert request(secured.port, "GET", "/healthz", {"X-Request-ID": last}).status == 200
    wait_for(lambda: last in (logs / "web.log").read_text(errors="replace"), 10,
             "the last request in the web app's log")
    secret_register.add(publish_key, *secret_keys)  # the test pools' secrets

    files = log_files(tmp_path_factory.getbasetemp())
    assert logs / "nginx-access.log" in files and logs / "stream.log" in files
    assert sum(path.stat().st_size for path in files) > 0
    leaks = []
    for path in files:
        text = path.read_text(errors="replace")
        leaks += [f"{path}: a secret" for secret in secret_register.values if secret in text]
        leaks += [f"{path}: token-shaped {m[:20]}..." for m in TOKEN_SHAPE.findall(text)]
    assert not leaks, leaks[:20]


def test_the_search_would_find_a_leak(tmp_path):
    # The control: a log line holding a token is found, by value and by shape.
    token = "eyJ2IjoxLCJjaCI6WyJhIl19.aBcDeF.0123456789abcdefghijKLMNOP"
    log = tmp_path / "var" / "log" / "web.log"
    log.parent.mkdir(parents=True)
    log.write_text(f"GET /streams?token={token} 200\n")
    assert log_files(tmp_path) == [log]
    assert TOKEN_SHAPE.findall(log.read_text()) == [token]


def test_only_a_plain_request_id_reaches_the_logs(secured, unique):
    # The caller's X-Request-ID is written into every log line: only a plain one is kept.
    odd, plain = f"odd id <{unique}>", f"plain-{unique}"
    assert request(secured.port, "GET", "/healthz", {"X-Request-ID": odd}).status == 200
    assert request(secured.port, "GET", "/healthz", {"X-Request-ID": plain}).status == 200
    logs = secured.stack.var_dir / "log"
    wait_for(lambda: plain in (logs / "web.log").read_text(errors="replace")
             and plain in (logs / "nginx-access.log").read_text(errors="replace"), 10,
             "the plain id in both logs")
    for path in log_files(logs):
        assert unique not in path.read_text(errors="replace").replace(plain, ""), path
