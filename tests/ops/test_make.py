"""The contract's commands: `make up`/`down`/`status`, and `make run` stopped with Ctrl-C, each on
a private var dir and free ports (EVENTGATE_* from the environment, as a user would set them).
"Nothing left" is checked on /proc for every process that was part of the stack while it ran."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Mapping
from pathlib import Path

from eventgate.deploy.stack import Process, running_processes, stack_processes
from eventgate.shared.stackredis import StackRedis
from tests.ops.makefile import MAKE_SECONDS, make
from tests.servers import free_port_block, port_open, wait_for
from tests.stack import REPO_ROOT, http_get


def var_dir(env: dict[str, str]) -> Path:
    return REPO_ROOT / env["EVENTGATE_VAR_DIR"]


def running_stack(env: dict[str, str]) -> dict[int, Process]:
    """The processes of the stack, while it runs: all of them, as names show."""
    found = stack_processes(var_dir(env))
    commands = [process.command for process in found.values()]
    for wanted in ("supervisord", "redis-server", "nginx: master", "nginx: worker",
                   "eventgate.web.wsgi:app", "eventgate.stream.wsgi:app"):
        assert any(wanted in command for command in commands), (wanted, commands)
    # supervisord, redis, two gunicorn masters with a worker each, nginx master + workers
    assert len(found) >= 8, commands
    return found


def assert_nothing_left(env: dict[str, str], before: Mapping[int, Process]) -> None:
    """No process of ``before`` (the stack while it ran) still runs, none is found under the
    var dir, no port answers."""
    table = running_processes()
    left = [p.command for p in before.values()
            if p.pid in table and table[p.pid].started == p.started]
    assert not left, f"still running: {left}"
    assert not stack_processes(var_dir(env)), "a process under the var dir"
    ports = [int(env[f"EVENTGATE_{n}"]) for n in ("PORT", "WEB_PORT", "STREAM_PORT", "REDIS_PORT")]
    assert not [port for port in ports if port_open(port)], "a port still answers"


def test_make_up_status_down_leaves_nothing(make_env):
    port = make_env["EVENTGATE_PORT"]
    up = make("up", make_env)
    assert up.returncode == 0, up.stdout + up.stderr
    # `make up` returns only once /healthz answers through nginx
    assert http_get(f"http://127.0.0.1:{port}/healthz")[0] == 200
    assert (REPO_ROOT / make_env["EVENTGATE_VAR_DIR"] / "eventgate.env").exists()

    wait_for(lambda: make("status", make_env).stdout.count("RUNNING") == 4, 30, "4 RUNNING")
    again = make("up", make_env)
    assert again.returncode == 0 and "already running" in again.stdout, again.stdout
    before = running_stack(make_env)

    down = make("down", make_env)
    assert down.returncode == 0, down.stdout + down.stderr
    assert_nothing_left(make_env, before)
    assert make("down", make_env).returncode == 0  # idempotent


def test_make_down_returns_after_every_process_and_up_works_at_once(make_env, tmp_path):
    """`make down` waits for Redis (whose title names no path) and for a supervisord started
    with a relative -c: a relative var dir, as in the Makefile's default."""
    env = {**make_env, "EVENTGATE_VAR_DIR": os.path.relpath(tmp_path / "var", REPO_ROOT)}
    port = env["EVENTGATE_PORT"]
    up = make("up", env)
    assert up.returncode == 0, up.stdout + up.stderr
    before = running_stack(env)
    assert any("-c " + env["EVENTGATE_VAR_DIR"] in p.command for p in before.values())

    down = make("down", env)

    assert down.returncode == 0, down.stdout + down.stderr
    assert_nothing_left(env, before)  # at once: no settle wait
    again = make("up", env)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "already running" not in again.stdout
    assert http_get(f"http://127.0.0.1:{port}/healthz")[0] == 200


def test_make_run_stops_everything_on_ctrl_c(make_env):
    port = make_env["EVENTGATE_PORT"]
    run = subprocess.Popen(["make", "run"], cwd=REPO_ROOT, env=make_env, start_new_session=True,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: http_get(f"http://127.0.0.1:{port}/healthz", timeout=2)[0] == 200,
                 MAKE_SECONDS, "make run to serve /healthz")
        before = running_stack(make_env)
        os.killpg(run.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        output, _ = run.communicate(timeout=90)
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait(10)
    assert b"received SIGINT" in output, output[-2000:]
    for name in (b"nginx", b"web", b"stream", b"redis"):  # each stopped, none left to be killed
        assert b"stopped: " + name in output, output[-2000:]
    assert_nothing_left(make_env, before)


def test_make_up_in_sentinel_mode_lists_its_redis_programs_and_down_leaves_nothing(make_env):
    """EVENTGATE_REDIS_MODE=sentinel make up: three data nodes and three sentinels in `make
    status`; `make down` finds them all by their pid files (redis-1.pid …, sentinel-1.pid …)."""
    redis_port = free_port_block(6)
    env = {**make_env, "EVENTGATE_REDIS_MODE": "sentinel", "EVENTGATE_REDIS_PORT": str(redis_port)}
    up = make("up", env)
    assert up.returncode == 0, up.stdout + up.stderr
    wanted = {"redis-1", "redis-2", "redis-3", "sentinel-1", "sentinel-2", "sentinel-3", "web",
              "stream", "nginx"}

    def listed() -> set[str]:
        lines = make("status", env).stdout.splitlines()
        return {line.split()[0] for line in lines if " RUNNING " in line}

    wait_for(lambda: listed() == wanted, 30, "every program RUNNING in make status")
    run = var_dir(env) / "run"
    assert {path.name for path in run.glob("*.pid")} >= {
        "redis-1.pid", "redis-2.pid", "redis-3.pid", "sentinel-1.pid", "sentinel-2.pid",
        "sentinel-3.pid"}
    before = running_stack(env)
    assert sum("redis-server" in p.command for p in before.values()) == 6

    down = make("down", env)
    assert down.returncode == 0, down.stdout + down.stderr
    assert_nothing_left(env, before)
    assert not [p for p in StackRedis("sentinel", redis_port).ports if port_open(p)]
