"""The contract's first WSGI names, ``web.wsgi:app`` and ``stream.wsgi:app``, still serve when
gunicorn runs from a checkout's root (gunicorn puts its working directory on sys.path): the thin
wsgi modules load as ``web.wsgi`` / ``stream.wsgi``, and everything they import is loaded once,
as ``eventgate.…``. Installed deployments use ``eventgate.web.wsgi:app`` /
``eventgate.stream.wsgi:app`` (docs/deploy.md, "Upgrading")."""

from __future__ import annotations

import json

import pytest

from tests.servers import LOOPBACK, child_env, free_port, venv_tool
from tests.stack import REPO_ROOT, http_get

POOLS = {
    "web": (["web.wsgi:app"], "/healthz"),
    "stream": (["-k", "gevent", "stream.wsgi:app"], "/streams/healthz"),
}


@pytest.mark.parametrize("pool", sorted(POOLS))
def test_the_contracts_entry_point_serves_from_the_checkout_root(
    pool, make_program, redis_server, secret_keys, publish_key, tmp_path
):
    flags, health = POOLS[pool]
    port = free_port()
    program = make_program(
        [venv_tool("gunicorn"), "-w", "1", "--bind", f"{LOOPBACK}:{port}",
         "--control-socket", tmp_path / f"{pool}.ctl", *flags],
        pool, port=port, cwd=REPO_ROOT, env=child_env(
            EVENTGATE_SECRET_KEY=",".join(secret_keys), EVENTGATE_PUBLISH_KEY=publish_key,
            EVENTGATE_REDIS_URL=redis_server.url, EVENTGATE_VAR_DIR=str(tmp_path / "var"),
        ),
    )
    url = f"http://{LOOPBACK}:{port}{health}"
    program.wait_until(lambda: http_get(url)[0] == 200, 30, f"the {pool} pool's {health}")
    status, _, body = http_get(url)
    assert status == 200 and isinstance(json.loads(body), dict)
