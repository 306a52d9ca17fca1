"""Rendering the production files (deploy/production/) for loopback: the ``render`` command
line, what it refuses, and the app nodes' supervisor conf.d as supervisor's own parser and
gunicorn's own argument parser read it. test_production_nginx.py covers the edge's nginx.conf."""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import replace

import pytest

from eventgate.deploy.production import main
from eventgate.deploy.render import render_production
from eventgate.shared.errors import ConfigError
from tests.ops.configs import gunicorn_settings, nginx_block, statements
from tests.ops.production import ORIGIN, conf_d_options, conf_d_programs
from tests.stack import REPO_ROOT


def test_supervisor_reads_the_conf_d_file(production, tmp_path):
    options = conf_d_options(production, tmp_path)
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
    assert stream.worker_class_str == "eventgate.stream.worker.StreamWorker"
    assert stream.workers == production.stream_workers
    assert stream.worker_connections == production.worker_streams
    assert stream.max_requests == 0 and not stream.preload_app
    assert stream.bind == [f"127.0.0.1:{production.stream_port}"]
    web = gunicorn_settings(shlex.split(programs["eventgate-web"].command))
    assert web.worker_class_str == "eventgate.web.worker.WebWorker"
    assert web.workers == production.web_workers
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
    # Whatever a node's Config would refuse at start, the edge refuses to be rendered with.
    for bad in ({"cors_origins": ("*",)}, {"cors_origins": ("https://a.example/x",)},
                {"cors_origins": ('https://a.example"; add_header X 1',)},
                {"connections_per_address": -1}, {"send_timeout_seconds": 0},
                {"max_event_bytes": 0}, {"listen_address": "1.2.3.4; x"},
                {"limit_zone_size": "20m; x"}):
        with pytest.raises(ConfigError):
            render_production(replace(production, **bad), tmp_path / "d")


def test_command_line_renders(tmp_path, capsys):
    code = main(["render", "--out", str(tmp_path), "--server-name", "events.example.com",
                 "--stream-node", "10.0.0.11:8001", "--stream-node", "10.0.0.12:8001",
                 "--web-node", "10.0.0.11:8000", "--tls-certificate", "/etc/ssl/e.pem",
                 "--tls-certificate-key", "/etc/ssl/e.key"])
    assert code == 0
    assert len(capsys.readouterr().out.split()) == 4
    nginx = (tmp_path / "nginx" / "nginx.conf").read_text()
    assert "server 10.0.0.12:8001" in nginx
    assert "listen 443 ssl http2;" in nginx and "listen [::]:443 ssl http2;" in nginx
    assert "return 301 https://$host$request_uri;" in nginx


def test_command_line_sets_the_limits(tmp_path, capsys):
    code = main(["render", "--out", str(tmp_path), "--server-name", "events.example.com",
                 "--stream-node", "10.0.0.11:8001", "--web-node", "10.0.0.11:8000",
                 "--tls-certificate", "/etc/ssl/e.pem", "--tls-certificate-key", "/etc/ssl/e.key",
                 "--listen-address", "10.0.0.1", "--https-port", "8443",
                 "--cors-origin", ORIGIN, "--cors-origin", "http://localhost:3000",
                 "--max-event-bytes", "2048", "--max-batch-events", "10",
                 "--connections-per-address", "7", "--stream-connect-rate", "3",
                 "--stream-connect-burst", "9", "--client-header-timeout", "11",
                 "--client-body-timeout", "31", "--send-timeout", "61"])
    assert code == 0, capsys.readouterr().err
    http = statements(nginx_block((tmp_path / "nginx" / "nginx.conf").read_text(), "http"))
    for wanted in ("client_max_body_size 30720", "client_header_timeout 11s",
                   "client_body_timeout 31s", "send_timeout 61s",
                   "limit_req_zone $binary_remote_addr zone=eventgate_connect:20m rate=3r/s"):
        assert wanted in http, wanted
    nginx = (tmp_path / "nginx" / "nginx.conf").read_text()
    assert "limit_conn eventgate_addr 7;" in nginx
    assert "limit_req zone=eventgate_connect burst=9 nodelay;" in nginx
    assert "listen 10.0.0.1:8443 ssl http2;" in nginx and "listen 10.0.0.1:80;" in nginx
    assert "return 301 https://$host:8443$request_uri;" in nginx
    assert f'"{ORIGIN}" $http_origin;' in nginx and '"http://localhost:3000" $http_origin;' in nginx
    conf_d = (tmp_path / "supervisor" / "eventgate.conf").read_text()
    assert f'EVENTGATE_CORS_ORIGINS="{ORIGIN},http://localhost:3000"' in conf_d
    assert 'EVENTGATE_MAX_EVENT_BYTES="2048"' in conf_d


# (6) The nodes run the installed package: no checkout anywhere.


def test_pools_run_the_installed_package(production, tmp_path):
    """gunicorn from the venv, its settings module from the package, the var dir as working
    directory (gunicorn puts it first on sys.path: it must hold no eventgate/ of its own)."""
    programs = conf_d_programs(production, tmp_path)
    for program, package in (("eventgate-web", "web"), ("eventgate-stream", "stream")):
        argv = shlex.split(programs[program].command)
        assert argv[0] == f"{production.venv}/bin/gunicorn", program
        assert argv[1] == f"eventgate.{package}.wsgi:app", program
        settings = gunicorn_settings(argv)
        assert settings.config == f"python:eventgate.{package}.gunicorn_conf", program
        assert programs[program].directory == production.var_dir, program
        assert (REPO_ROOT / package / "gunicorn_conf.py").is_file()
    # Every path the conf.d file names is the venv's, the var dir's or the log dir's.
    text = (tmp_path / "out" / "supervisor" / "eventgate.conf").read_text()
    settings = "\n".join(line for line in text.splitlines() if not line.startswith(";"))
    paths = re.findall(r"(?<![\w.:/])/[\w./-]+", settings)
    homes = (production.venv, production.var_dir, production.log_dir)
    assert paths and all(path.startswith(homes) for path in paths), paths


def test_command_line_sets_the_paths(tmp_path, capsys):
    code = main(["render", "--out", str(tmp_path), "--server-name", "events.example.com",
                 "--stream-node", "10.0.0.11:8001", "--web-node", "10.0.0.11:8000",
                 "--tls-certificate", "/etc/ssl/e.pem", "--tls-certificate-key", "/etc/ssl/e.key",
                 "--venv", "/opt/eg", "--var-dir", "/srv/eg-var", "--log-dir", "/srv/eg-log",
                 "--user", "events"])
    assert code == 0, capsys.readouterr().err
    conf_d = (tmp_path / "supervisor" / "eventgate.conf").read_text()
    assert conf_d.count("command=/opt/eg/bin/gunicorn ") == 2
    assert conf_d.count("directory=/srv/eg-var\n") == 2
    assert conf_d.count("user=events\n") == 2
    assert conf_d.count("stdout_logfile=/srv/eg-log/") == 2
    assert 'EVENTGATE_VAR_DIR="/srv/eg-var"' in conf_d


def test_the_outbox_relay_is_a_program_only_when_asked(production, tmp_path):
    assert "eventgate-relay" not in conf_d_programs(production, tmp_path / "without")

    options = conf_d_options(replace(production, outbox_relay=True), tmp_path / "with")
    groups = {group.name: group for group in options.process_group_configs}
    relay = {p.name: p for p in groups["eventgate"].process_configs}["eventgate-relay"]

    assert shlex.split(relay.command) == [f"{production.venv}/bin/eventgate", "relay"]
    assert relay.autorestart is not False and relay.stopsignal == 15  # SIGTERM
    assert relay.stdout_logfile == f"{production.log_dir}/relay.log"
    assert relay.directory == production.var_dir and relay.uid == os.getuid()
    environment = dict(relay.environment)
    assert environment["EVENTGATE_VAR_DIR"] == production.var_dir
    assert not any("URL" in key or "KEY" in key for key in environment)


def test_command_line_asks_for_the_outbox_relay(tmp_path, capsys):
    code = main(["render", "--out", str(tmp_path), "--server-name", "events.example.com",
                 "--stream-node", "10.0.0.11:8001", "--web-node", "10.0.0.11:8000",
                 "--tls-certificate", "/etc/ssl/e.pem", "--tls-certificate-key", "/etc/ssl/e.key",
                 "--outbox-relay"])
    assert code == 0
    text = (tmp_path / "supervisor" / "eventgate.conf").read_text()
    assert "programs=eventgate-web,eventgate-stream,eventgate-relay\n" in text
    assert "[program:eventgate-relay]" in text
