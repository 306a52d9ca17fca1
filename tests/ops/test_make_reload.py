"""`make reload` and `make restart` on a stack started with `make up`: reload replaces every
worker of both pools without restarting their masters; restart replaces the masters too."""

from __future__ import annotations

import subprocess
import sys

from tests.ops.makefile import make
from tests.servers import wait_for
from tests.stack import REPO_ROOT, http_get, process_tree


def masters_and_workers(env: dict[str, str]) -> dict[str, tuple[int, set[int]]]:
    conf = REPO_ROOT / env["EVENTGATE_VAR_DIR"] / "conf" / "supervisord.conf"
    found = {}
    for program in ("web", "stream"):
        result = subprocess.run(
            [sys.executable, "-m", "supervisor.supervisorctl", "-c", str(conf), "pid", program],
            capture_output=True, text=True, timeout=30, env=env, check=False,
        )
        master = int(result.stdout.strip())
        found[program] = (master, set(process_tree(master)) - {master})
    return found


def test_make_reload_then_restart(make_env):
    port = make_env["EVENTGATE_PORT"]
    up = make("up", make_env)
    assert up.returncode == 0, up.stdout + up.stderr
    before = masters_and_workers(make_env)

    reload = make("reload", make_env)
    assert reload.returncode == 0, reload.stdout + reload.stderr

    def reloaded():
        now = masters_and_workers(make_env)
        return all(now[p][0] == before[p][0] and now[p][1] and not now[p][1] & before[p][1]
                   for p in before)

    wait_for(reloaded, 30, "new workers under the same masters")
    for path in ("/readyz", "/streams/readyz"):
        wait_for(lambda path=path: http_get(f"http://127.0.0.1:{port}{path}")[0] == 200, 15,
                 f"{path} after the reload")

    restart = make("restart", make_env)
    assert restart.returncode == 0, restart.stdout + restart.stderr
    after = masters_and_workers(make_env)
    assert all(after[p][0] != before[p][0] for p in before)
    wait_for(lambda: http_get(f"http://127.0.0.1:{port}/streams/readyz")[0] == 200, 30,
             "the stream pool after the restart")
