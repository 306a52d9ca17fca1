"""A production start refuses a missing or weak secret: the real gunicorn commands of both pools
exit non-zero at once with one line saying why, and no traceback."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from tests.servers import Program, child_env, free_port, venv_tool
from tests.stack import REPO_ROOT, http_get

STRONG = secrets.token_urlsafe(32)
STRONG_TOO = secrets.token_urlsafe(32)
POOLS = {
    "web": ["eventgate.web.wsgi:app"],
    "stream": ["-k", "gevent", "eventgate.stream.wsgi:app"],
}


def gunicorn(make_program, pool: str, tmp_path: Path, settings: dict[str, str]) -> Program:
    """The pool's gunicorn command in production mode, on a free port."""
    port = free_port()
    env = child_env(EVENTGATE_VAR_DIR=str(tmp_path / "var"), **settings)  # no eventgate.env there
    return make_program(
        [venv_tool("gunicorn"), *POOLS[pool], "--bind", f"127.0.0.1:{port}",
         "--control-socket", tmp_path / f"{pool}.ctl"],
        pool, port=port, cwd=REPO_ROOT, env=env,
    )


REFUSED = {
    "weak signing key": ({"EVENTGATE_SECRET_KEY": "changeme", "EVENTGATE_PUBLISH_KEY": STRONG},
                         "shorter than 32 characters"),
    "long signing key of one repeated character": (
        {"EVENTGATE_SECRET_KEY": "a" * 64, "EVENTGATE_PUBLISH_KEY": STRONG},
        "shorter than 32 characters"),
    "weak publisher key": ({"EVENTGATE_SECRET_KEY": STRONG, "EVENTGATE_PUBLISH_KEY": "hunter2"},
                           "shorter than 32 characters"),
    "an old signing key still listed is weak": (
        {"EVENTGATE_SECRET_KEY": f"{STRONG},dev", "EVENTGATE_PUBLISH_KEY": STRONG_TOO},
        "shorter than 32 characters"),
    "weak key behind a long scope": (
        {"EVENTGATE_SECRET_KEY": STRONG,
         "EVENTGATE_PUBLISH_KEY": "short:" + "+".join(f"orders.{n}" for n in range(9))},
        "shorter than 32 characters"),
    "missing signing key": ({"EVENTGATE_PUBLISH_KEY": STRONG}, "EVENTGATE_SECRET_KEY is not set"),
    "missing publisher key": ({"EVENTGATE_SECRET_KEY": STRONG}, "EVENTGATE_PUBLISH_KEY is not set"),
    "malformed publisher key entry": (
        {"EVENTGATE_SECRET_KEY": STRONG, "EVENTGATE_PUBLISH_KEY": f"{STRONG_TOO}:bad name"},
        "publisher key #1"),
}


@pytest.mark.parametrize("pool", POOLS)
@pytest.mark.parametrize("case", REFUSED)
def test_production_start_refuses(make_program, pool, case, tmp_path):
    settings, reason = REFUSED[case]
    program = gunicorn(make_program, pool, tmp_path, {"EVENTGATE_ENV": "production", **settings})
    returncode = program.wait(30)
    output = program.output()
    assert returncode != 0, output
    said = [line for line in output.splitlines() if line.startswith("eventgate: ")]
    assert len(said) == 1 and reason in said[0], output
    assert "Traceback" not in output
    for secret in (STRONG, STRONG_TOO):
        assert secret not in output


@pytest.mark.parametrize("pool", POOLS)
def test_production_start_with_strong_secrets_serves(make_program, pool, tmp_path, redis_server):
    # The control: the same command with good secrets starts and answers its health check.
    program = gunicorn(make_program, pool, tmp_path, {
        "EVENTGATE_ENV": "production", "EVENTGATE_SECRET_KEY": STRONG,
        "EVENTGATE_PUBLISH_KEY": STRONG_TOO, "EVENTGATE_REDIS_URL": redis_server.url,
    })
    health = f"http://127.0.0.1:{program.port}" + ("/healthz" if pool == "web" else
                                                     "/streams/healthz")
    program.wait_until(lambda: http_get(health, timeout=2)[0] == 200, 30,
                       "the pool to answer its health check")
    program.stop()
    assert "eventgate: " not in program.output()
