"""The production templates (deploy/production/), rendered with loopback addresses into a
temporary directory: nginx itself accepts the edge config (``nginx -t``), supervisor's own
parser reads the conf.d file, gunicorn's parser reads the commands, and the sizes hold up."""

from __future__ import annotations

import getpass
import grp
import os
import shlex
import subprocess
from dataclasses import replace

import pytest

from shared.errors import ConfigError
from shared.production import Production, main, render_production
from tests.ops.test_rendered_configs import (
    directives,
    gunicorn_settings,
    nginx_block,
    supervisor_options,
)

PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@pytest.fixture
def production(tmp_path) -> Production:
    """Loopback nodes and every path under tmp_path, so that nginx -t can run as anyone."""
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=eventgate.test", "-keyout", str(tmp_path / "tls.key"),
         "-out", str(tmp_path / "tls.crt")],
        check=True, capture_output=True, timeout=60,
    )
    for name in ("nginx-log", "nginx-run", "nginx-temp", "log"):
        (tmp_path / name).mkdir()
    return Production(
        server_name="eventgate.test",
        stream_nodes=("127.0.0.1:18001", "127.0.0.2:18001", "127.0.0.3:18001"),
        web_nodes=("127.0.0.1:18000", "127.0.0.2:18000"),
        tls_certificate=str(tmp_path / "tls.crt"),
        tls_certificate_key=str(tmp_path / "tls.key"),
        root=str(tmp_path / "srv"), venv=str(tmp_path / "srv" / ".venv"),
        var_dir=str(tmp_path / "var"), log_dir=str(tmp_path / "log"),
        user=getpass.getuser(), bind_address="127.0.0.1",
        nginx_user=f"{getpass.getuser()} {grp.getgrgid(os.getegid()).gr_name}",
        nginx_log_dir=str(tmp_path / "nginx-log"), nginx_run_dir=str(tmp_path / "nginx-run"),
        nginx_conf_dir=str(tmp_path / "out" / "nginx"),
        nginx_temp_dir=str(tmp_path / "nginx-temp"),
    )


def test_nginx_accepts_the_edge_config(production, tmp_path):
    paths = render_production(production, tmp_path / "out")
    nginx_conf = tmp_path / "out" / "nginx" / "nginx.conf"
    assert nginx_conf in paths
    result = subprocess.run(
        ["nginx", "-t", "-c", str(nginx_conf), "-p", str(tmp_path / "nginx-temp")],
        capture_output=True, text=True, timeout=30, check=False, env={"PATH": PATH},
    )
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr


def test_edge_sizes_and_upstreams(production, tmp_path):
    render_production(production, tmp_path / "out")
    nginx = (tmp_path / "out" / "nginx" / "nginx.conf").read_text()
    main_context = directives(nginx)
    rlimit = int(next(d for d in main_context if d.startswith("worker_rlimit_nofile")).split()[1])
    connections = int(next(d for d in directives(nginx_block(nginx, "events"))
                           if d.startswith("worker_connections")).split()[1])
    # Tens of thousands of streams per nginx worker, two connections each, and files for all.
    assert connections >= 2 * 30000
    assert rlimit >= 2 * connections
    stream = directives(nginx_block(nginx, "upstream eventgate_stream"))
    assert stream[0] == "least_conn"
    assert [d.split()[1] for d in stream[1:]] == list(production.stream_nodes)
    web = directives(nginx_block(nginx, "upstream eventgate_web"))
    assert [d.split()[1] for d in web if d.startswith("server")] == list(production.web_nodes)
    streams = directives(nginx_block(nginx, "location /streams"))
    for wanted in ("proxy_buffering off", "proxy_read_timeout 1h", "gzip off",
                   "error_page 502 503 504 = @stream_unavailable"):
        assert wanted in streams
    proxy = (tmp_path / "out" / "nginx" / "eventgate-proxy.conf").read_text()
    assert "proxy_set_header X-Request-ID $eventgate_request_id;" in proxy
    assert "$request_uri" not in nginx.split("log_format", 1)[1].split(";", 1)[0]


def test_supervisor_reads_the_conf_d_file(production, tmp_path):
    render_production(production, tmp_path / "out")
    main_conf = tmp_path / "supervisord.conf"
    main_conf.write_text(
        "[supervisord]\n"
        f"logfile={tmp_path}/supervisord.log\npidfile={tmp_path}/supervisord.pid\n"
        "minfds=1024\n"
        f"[include]\nfiles={tmp_path}/out/supervisor/*.conf\n"
    )
    options = supervisor_options(main_conf)
    groups = {group.name: group for group in options.process_group_configs}
    assert set(groups) == {"eventgate"}
    programs = {p.name: p for p in groups["eventgate"].process_configs}
    assert set(programs) == {"eventgate-web", "eventgate-stream"}
    for name, program in programs.items():
        environment = dict(program.environment)
        assert environment["EVENTGATE_ENV"] == "production", name
        assert environment["EVENTGATE_LOG_FORMAT"] == "json", name
        assert environment["PROMETHEUS_MULTIPROC_DIR"].startswith(production.var_dir), name
        assert not any("KEY" in key or "REDIS_URL" in key for key in environment), name
        assert program.uid == os.getuid(), name
        assert program.stdout_logfile.startswith(production.log_dir)
        assert program.stdout_logfile_maxbytes > 0 and program.stdout_logfile_backups > 0
    stream = gunicorn_settings(shlex.split(programs["eventgate-stream"].command))
    assert stream.worker_class_str == "gevent"
    assert stream.workers == production.stream_workers
    assert stream.worker_connections == production.worker_streams
    assert stream.max_requests == 0 and not stream.preload_app
    assert stream.bind == [f"127.0.0.1:{production.stream_port}"]
    web = gunicorn_settings(shlex.split(programs["eventgate-web"].command))
    assert web.worker_class_str == "sync" and web.workers == production.web_workers
    text = (tmp_path / "out" / "supervisor" / "eventgate.conf").read_text()
    needed = production.stream_workers * production.worker_streams
    minfds = int(text.split("minfds=", 1)[1].split()[0].rstrip("`"))
    assert minfds >= needed


def test_refuses_what_the_configs_cannot_hold(production, tmp_path):
    with pytest.raises(ConfigError):
        render_production(replace(production, stream_nodes=("10.0.0.5",)), tmp_path / "a")
    with pytest.raises(ConfigError):
        render_production(replace(production, server_name="x; include /etc/passwd"),
                          tmp_path / "b")
    with pytest.raises(ConfigError):
        render_production(replace(production, web_nodes=()), tmp_path / "c")


def test_command_line_renders(tmp_path, capsys):
    code = main(["render", "--out", str(tmp_path), "--server-name", "events.example.com",
                 "--stream-node", "10.0.0.11:8001", "--stream-node", "10.0.0.12:8001",
                 "--web-node", "10.0.0.11:8000", "--tls-certificate", "/etc/ssl/e.pem",
                 "--tls-certificate-key", "/etc/ssl/e.key"])
    assert code == 0
    assert len(capsys.readouterr().out.split()) == 3
    assert "server 10.0.0.12:8001" in (tmp_path / "nginx" / "nginx.conf").read_text()
