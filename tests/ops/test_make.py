"""The contract's commands: `make up`/`down`/`status`, and `make run` stopped with Ctrl-C, each on
a private var dir and free ports (EVENTGATE_* from the environment, as a user would set them)."""

from __future__ import annotations

import os
import signal
import subprocess

import pytest

from eventgate.deploy.stack import stack_processes
from tests.servers import child_env, free_port, port_open, wait_for
from tests.stack import REPO_ROOT, http_get

MAKE_SECONDS = 180


@pytest.fixture
def make_env(tmp_path):
    ports = {name: free_port() for name in ("PORT", "WEB_PORT", "STREAM_PORT", "REDIS_PORT")}
    env = child_env(
        EVENTGATE_VAR_DIR=str(tmp_path / "var"),
        EVENTGATE_WEB_WORKERS="1",
        EVENTGATE_STREAM_WORKERS="1",
        **{f"EVENTGATE_{name}": str(port) for name, port in ports.items()},
    )
    for name in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL"):  # when the suite itself runs under make
        env.pop(name, None)
    yield env
    # Whatever happened, stop what this test started.
    subprocess.run(["make", "down"], cwd=REPO_ROOT, env=env, capture_output=True,
                   timeout=MAKE_SECONDS, check=False)


def make(target: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(["make", target], cwd=REPO_ROOT, env=env, capture_output=True,
                          text=True, timeout=MAKE_SECONDS, check=False)


def assert_nothing_left(env: dict[str, str]) -> None:
    left = stack_processes(REPO_ROOT / env["EVENTGATE_VAR_DIR"])
    assert not left, f"still running: {left}"
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

    down = make("down", make_env)
    assert down.returncode == 0, down.stdout + down.stderr
    assert_nothing_left(make_env)
    assert make("down", make_env).returncode == 0  # idempotent


def test_make_run_stops_everything_on_ctrl_c(make_env):
    port = make_env["EVENTGATE_PORT"]
    run = subprocess.Popen(["make", "run"], cwd=REPO_ROOT, env=make_env, start_new_session=True,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: http_get(f"http://127.0.0.1:{port}/healthz", timeout=2)[0] == 200,
                 MAKE_SECONDS, "make run to serve /healthz")
        os.killpg(run.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        output, _ = run.communicate(timeout=90)
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait(10)
    assert b"received SIGINT" in output, output[-2000:]
    for name in (b"nginx", b"web", b"stream", b"redis"):  # each stopped, none left to be killed
        assert b"stopped: " + name in output, output[-2000:]
    assert_nothing_left(make_env)
