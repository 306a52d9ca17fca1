"""What nginx answers while a program is down, and that stopping the stack leaves nothing behind.

Each test has its own stack (``make_stack``) because it stops programs.
"""

from __future__ import annotations

import json
import secrets

from tests.fallback import assert_spread, fallback_delay
from tests.stack import http_get, process_tree, still_alive


def test_streams_ask_to_retry_while_the_stream_pool_is_down(make_stack):
    """reliability.md S-4: an EventSource never retries after a 502, so nginx answers 200 with
    ``retry:`` instead, jittered so that the browsers it turns away do not come back all at
    once; the stream health check still tells the truth."""
    stack = make_stack()
    result = stack.supervisorctl("stop", "stream")
    assert result.returncode == 0, result.stdout + result.stderr
    secret = f"secretvalue{secrets.token_hex(8)}"

    status, headers, body = http_get(stack.url(f"/streams?token={secret}"))

    assert status == 200
    assert headers["Content-Type"] == "text/event-stream"
    assert headers["Cache-Control"] == "no-cache"
    delays = [fallback_delay(body)]
    delays += [fallback_delay(http_get(stack.url(f"/streams?token={secret}"))[2])
               for _ in range(63)]
    assert_spread(delays)
    status, headers, body = http_get(stack.url("/streams/healthz"))
    assert status == 503
    assert json.loads(body)["error"] == "unavailable"
    assert http_get(stack.url("/healthz"))[0] == 200
    for name in ("nginx-access", "nginx-error"):
        assert secret not in stack.log(name), f"the token is in {name}.log"


def test_web_down_is_a_json_503(make_stack):
    stack = make_stack()
    assert stack.supervisorctl("stop", "web").returncode == 0

    status, headers, body = http_get(stack.url("/api/events"))

    assert status == 503
    assert headers["Content-Type"] == "application/json"
    assert headers["Retry-After"] == "2"
    assert json.loads(body)["error"] == "unavailable"


def test_stopping_the_stack_leaves_no_process(make_stack):
    stack = make_stack(stream_workers=2, web_workers=2)
    tree = process_tree(stack.process.pid)
    # supervisord, redis, two gunicorn masters with two workers each, nginx master + workers
    assert len(tree) >= 1 + 1 + 3 + 3 + 2, tree

    stack.stop()  # asserts: exit status 0, no process of the tree or under var/ left, ports free

    assert not still_alive(tree)
