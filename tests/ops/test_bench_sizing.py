"""The whole-stack scenarios (S5, S6: bench/wholestack.py) size the rendered stack by the rule
of docs/deploy.md; these check the rule's arithmetic and that the sized files are still ones
nginx accepts, so that a template change cannot silently break the benchmark."""

from __future__ import annotations

import math
import runpy
import subprocess

from tests.stack import REPO_ROOT, Stack


def wholestack() -> dict:
    return runpy.run_path(str(REPO_ROOT / "bench" / "wholestack.py"))


def test_the_rule_keeps_every_process_under_its_open_files():
    bench = wholestack()
    limit, fill = bench["FD_LIMIT"], bench["FILL"]
    sizing = bench["Sizing"].for_streams(100_000)
    assert (sizing.nginx_workers, sizing.stream_workers) == (13, 7)  # docs/deploy.md's table
    assert sizing.nginx_connections < limit  # two per stream: client and upstream
    assert sizing.streams_per_stream_worker < limit
    assert sizing.nginx_workers * fill * sizing.nginx_connections / 2 >= 100_000
    assert sizing.stream_workers * fill * sizing.streams_per_stream_worker >= 100_000
    small = bench["Sizing"].for_streams(1)
    assert (small.nginx_workers, small.stream_workers) == (1, 1)
    assert math.ceil(100_000 / (fill * sizing.streams_per_stream_worker)) == 7


def test_the_sized_stack_is_one_nginx_accepts(tmp_path):
    bench = wholestack()
    sizing = bench["Sizing"].for_streams(100_000)
    stack = Stack(tmp_path, stream_workers=sizing.stream_workers)  # rendered, not started
    bench["apply_sizing"](stack, sizing)
    conf = stack.var_dir / "conf"
    nginx = (conf / "nginx.conf").read_text()
    assert "worker_processes 13;" in nginx
    assert f"worker_rlimit_nofile {bench['FD_LIMIT']};" in nginx
    assert f"listen 127.0.0.1:{stack.port} reuseport;" in nginx
    assert "stream.sock" in nginx  # the pool on its Unix socket: no ephemeral ports to spread
    assert "nginx-error.log error;" in nginx
    assert "--worker-connections 19500" in (conf / "supervisord.conf").read_text()
    result = subprocess.run(
        ["nginx", "-t", "-c", str(conf / "nginx.conf"), "-p", str(stack.var_dir / "nginx")],
        capture_output=True, text=True, timeout=30, check=False,
        env={"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
    )
    assert result.returncode == 0, result.stderr
