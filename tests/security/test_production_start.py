"""A production start refuses a missing or weak secret: the real gunicorn commands of both pools
exit non-zero at once with one line saying why, and no traceback."""

from __future__ import annotations

import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from tests.servers import child_env, free_port, wait_for
from tests.stack import REPO_ROOT, http_get

STRONG = secrets.token_urlsafe(32)
STRONG_TOO = secrets.token_urlsafe(32)
POOLS = {
    "web": ["eventgate.web.wsgi:app"],
    "stream": ["-k", "gevent", "eventgate.stream.wsgi:app"],
}


def gunicorn(pool: str, tmp_path: Path, settings: dict[str, str]) -> subprocess.Popen:
    binary = Path(sys.executable).parent / "gunicorn"
    port = free_port()
    env = child_env(EVENTGATE_VAR_DIR=str(tmp_path / "var"), **settings)  # no eventgate.env there
    process = subprocess.Popen(
        [str(binary), *POOLS[pool], "--bind", f"127.0.0.1:{port}",
         "--control-socket", str(tmp_path / f"{pool}.ctl")],
        cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    process.port = port  # type: ignore[attr-defined]
    return process


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
def test_production_start_refuses(pool, case, tmp_path):
    settings, reason = REFUSED[case]
    process = gunicorn(pool, tmp_path, {"EVENTGATE_ENV": "production", **settings})
    output, _ = process.communicate(timeout=30)
    assert process.returncode != 0, output
    said = [line for line in output.splitlines() if line.startswith("eventgate: ")]
    assert len(said) == 1 and reason in said[0], output
    assert "Traceback" not in output
    for secret in (STRONG, STRONG_TOO):
        assert secret not in output


@pytest.mark.parametrize("pool", POOLS)
def test_production_start_with_strong_secrets_serves(pool, tmp_path, redis_server):
    # The control: the same command with good secrets starts and answers its health check.
    process = gunicorn(pool, tmp_path, {
        "EVENTGATE_ENV": "production", "EVENTGATE_SECRET_KEY": STRONG,
        "EVENTGATE_PUBLISH_KEY": STRONG_TOO, "EVENTGATE_REDIS_URL": redis_server.url,
    })
    health = f"http://127.0.0.1:{process.port}" + ("/healthz" if pool == "web" else
                                                     "/streams/healthz")
    try:
        wait_for(lambda: process.poll() is not None or http_get(health, timeout=2)[0] == 200,
                 30, "the pool to answer its health check")
        assert process.poll() is None, process.communicate(timeout=5)[0]
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=30)
    assert "eventgate: " not in output
