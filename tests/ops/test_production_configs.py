"""The production templates (deploy/production/), rendered with loopback addresses into a
temporary directory: nginx itself accepts the edge config (``nginx -t``), supervisor's own
parser reads the conf.d file, gunicorn's parser reads the commands, and the sizes hold up.

The edge has the development stack's hardening (docs/security.md): the app's own body limit,
JSON for nginx's own errors (a ``retry:`` stream on /streams), per-address limits and slow-client
timeouts, CORS on nginx's own stream answers, plain request ids only, no query string in a log;
the blocks it shares with the development template are checked to be the same.
test_production_edge.py runs the rendered edge and asks it."""

from __future__ import annotations

import dataclasses
import getpass
import grp
import json
import os
import re
import secrets
import shlex
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from eventgate.deploy.production import main
from eventgate.deploy.render import (
    APP_SETTINGS,
    EDGE_LIMITS,
    NginxSettings,
    Production,
    render_production,
    render_stack,
)
from eventgate.shared.config import ENV_FILE_NAME, Config, max_request_bytes
from eventgate.shared.errors import ConfigError
from tests.ops.test_rendered_configs import (
    directives,
    gunicorn_settings,
    nginx_block,
    supervisor_options,
)
from tests.stack import REPO_ROOT

PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
ORIGIN = "https://app.example.test"
#: nginx's own error answers: the same blocks in the development and the production template.
SHARED_LOCATIONS = ("@too_many_requests", "@bad_request", "= /.eventgate/uri-too-long",
                    "@too_large", "@unavailable", "@stream_unavailable")
SHARED_MAPS = ("map $http_x_request_id $eventgate_request_id",
               "map $http_origin $eventgate_cors_origin",
               "map $eventgate_cors_origin $eventgate_cors_credentials")
LEAKY_LOG_VARIABLES = ("$request ", "$request\"", "$request'", "$request_uri", "$args",
                       "$query_string", "$arg_", "$http_referer", "$request_body")


def loopback_production(tmp_path: Path, **overrides) -> Production:
    """Loopback nodes and every path under tmp_path, so that nginx can run as anyone."""
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=eventgate.test", "-keyout", str(tmp_path / "tls.key"),
         "-out", str(tmp_path / "tls.crt")],
        check=True, capture_output=True, timeout=60,
    )
    for name in ("nginx-log", "nginx-run", "nginx-temp", "log"):
        (tmp_path / name).mkdir()
    settings = dict(
        server_name="eventgate.test",
        stream_nodes=("127.0.0.1:18001", "127.0.0.2:18001", "127.0.0.3:18001"),
        web_nodes=("127.0.0.1:18000", "127.0.0.2:18000"),
        tls_certificate=str(tmp_path / "tls.crt"),
        tls_certificate_key=str(tmp_path / "tls.key"),
        venv=str(tmp_path / "venv"),
        var_dir=str(tmp_path / "var"), log_dir=str(tmp_path / "log"),
        user=getpass.getuser(), bind_address="127.0.0.1",
        nginx_user=f"{getpass.getuser()} {grp.getgrgid(os.getegid()).gr_name}",
        nginx_log_dir=str(tmp_path / "nginx-log"), nginx_run_dir=str(tmp_path / "nginx-run"),
        nginx_conf_dir=str(tmp_path / "out" / "nginx"),
        nginx_temp_dir=str(tmp_path / "nginx-temp"),
    )
    return Production(**{**settings, **overrides})


@pytest.fixture
def production(tmp_path) -> Production:
    return loopback_production(tmp_path, cors_origins=(ORIGIN,))


def rendered(production: Production, out: Path) -> str:
    """The edge's nginx.conf with every ``include`` replaced by the rendered file it names."""
    render_production(production, out)
    text = (out / "nginx" / "nginx.conf").read_text()
    return re.sub(r"^\s*include (\S+);$", lambda m: Path(m.group(1)).read_text(), text,
                  flags=re.MULTILINE)


def blocks(text: str, opening: str) -> list[str]:
    """Every ``opening { … }`` block of ``text``, in order."""
    found, start = [], 0
    while (at := text.find(opening + " {", start)) != -1:
        found.append(nginx_block(text[at:], opening))
        start = at + 1
    return found


def statements(block: str) -> list[str]:
    """Top-level directives of an nginx block, whitespace-normalised, comments dropped; unlike
    ``directives``, a ';', '{', '}' or '#' inside quotes (a JSON body, a regex) stays put."""
    found, depth, current, quote, escaped, comment = [], 0, "", "", False, False
    for char in block:
        if comment:
            comment = char != "\n"
            continue
        if quote:
            if depth == 0:
                current += char
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == quote:
                quote = ""
            continue
        if char in "'\"":
            quote = char
        elif char == "#":
            comment = True
            continue
        elif char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                current = ""
            continue
        elif char == ";" and depth == 0:
            found.append(" ".join(current.split()))
            current = ""
            continue
        if depth == 0:
            current += char
    return found


def locations(server: str) -> dict[str, list[str]]:
    """``location`` name (``@x``, ``= /path``, ``/prefix``, ``~ regex``) -> its directives."""
    found = {}
    for match in re.finditer(r"^\s*location ([^{\n]+?) \{", server, re.MULTILINE):
        name = match.group(1)
        found[name] = statements(nginx_block(server[match.start():].lstrip(), f"location {name}"))
    return found


def edge_servers(text: str) -> tuple[str, str]:
    """(the plain HTTP server, the HTTPS one)."""
    http_block = nginx_block(text, "http")
    plain, tls = blocks(http_block, "server")
    assert "ssl_certificate" in tls and "ssl_certificate" not in plain
    return plain, tls


def json_return(directive: str) -> tuple[int, dict]:
    """``return CODE '{json}\\n'`` -> (CODE, the parsed body)."""
    match = re.fullmatch(r"return (\d+) '(.*)'", directive)
    assert match, directive
    return int(match.group(1)), json.loads(match.group(2).replace("\\n", "\n"))


def app_config(program_environment: dict[str, str], var_dir: str) -> Config:
    """The Config an app node builds from its rendered environment, over an eventgate.env that
    tries to set the shared settings otherwise (the rendered environment must win)."""
    env_file = Path(var_dir) / ENV_FILE_NAME
    env_file.parent.mkdir(parents=True, exist_ok=True)
    env_file.write_text(
        f"EVENTGATE_SECRET_KEY={secrets.token_urlsafe(32)}\n"
        f"EVENTGATE_PUBLISH_KEY={secrets.token_urlsafe(32)}\n"
        "EVENTGATE_MAX_EVENT_BYTES=999999\nEVENTGATE_MAX_BATCH_EVENTS=1\n"
        "EVENTGATE_CORS_ORIGINS=https://elsewhere.example.test\n"
    )
    return Config.from_env(program_environment)


def conf_d_programs(production: Production, tmp_path: Path) -> dict:
    render_production(production, tmp_path / "out")
    main_conf = tmp_path / "supervisord.conf"
    main_conf.write_text(
        "[supervisord]\n"
        f"logfile={tmp_path}/supervisord.log\npidfile={tmp_path}/supervisord.pid\n"
        "minfds=1024\n"
        f"[include]\nfiles={tmp_path}/out/supervisor/*.conf\n"
    )
    options = supervisor_options(main_conf)
    return {p.name: p for group in options.process_group_configs for p in group.process_configs}


@pytest.mark.parametrize("variant", [
    {},
    {"connections_per_address": 0, "stream_connect_rate": 0, "cors_origins": ()},
    {"listen_address": "127.0.0.1", "http_port": 18080, "https_port": 18443},
], ids=["defaults", "no-limits", "one-address"])
def test_nginx_accepts_the_edge_config(production, tmp_path, variant):
    paths = render_production(replace(production, **variant), tmp_path / "out")
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
    # The nodes' gunicorn keeps connections 75s: nginx must end idle ones first.
    assert "keepalive 32" in web and "keepalive_timeout 60s" in web
    streams = directives(nginx_block(nginx, "location /streams"))
    for wanted in ("proxy_buffering off", "proxy_pass_header X-Accel-Buffering",
                   "proxy_read_timeout 1h", "gzip off",
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


def test_listens_where_told(production, tmp_path):
    for address, wanted in (("", ["443 ssl http2", "[::]:443 ssl http2"]),
                            ("10.0.0.1", ["10.0.0.1:443 ssl http2"]),
                            ("[::1]", ["[::1]:443 ssl http2"])):
        _, tls = edge_servers(rendered(replace(production, listen_address=address),
                                       tmp_path / "out"))
        assert [d.removeprefix("listen ") for d in statements(tls)
                if d.startswith("listen")] == wanted, address


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


def test_production_has_every_setting_nginx_limits_reads():
    """nginx_limits() takes a Production where the dev stack passes a Config: same names, and
    the same defaults, so the two edges are the same unless told otherwise."""
    names = set(NginxSettings.__annotations__)
    production_fields = {f.name: f.default for f in dataclasses.fields(Production)}
    config_fields = {f.name: f.default for f in dataclasses.fields(Config)}
    assert names <= set(production_fields)
    assert names == set(APP_SETTINGS) | set(EDGE_LIMITS)
    for name in names - {"cors_origins"}:
        assert production_fields[name] == config_fields[name], name


# (1) The body limit: the app's own, rendered into both the edge and the app nodes.


@pytest.mark.parametrize("sizes", [{}, {"max_event_bytes": 2048, "max_batch_events": 10},
                                   {"max_event_bytes": 1 << 20, "max_batch_events": 1}])
def test_body_limit_is_the_apps_own(production, tmp_path, sizes):
    production = replace(production, **sizes)
    programs = conf_d_programs(production, tmp_path)
    http = statements(nginx_block(rendered(production, tmp_path / "out"), "http"))
    limits = [d for d in http if d.startswith("client_max_body_size")]
    for name, program in programs.items():
        app = app_config(dict(program.environment), production.var_dir)
        assert limits == [f"client_max_body_size {max_request_bytes(app)}"], name
        assert (app.max_event_bytes, app.max_batch_events) == (
            production.max_event_bytes, production.max_batch_events), name
        assert app.cors_origins == production.cors_origins, name


# (2) nginx's own answers: JSON, and a retry stream (never a 5xx) on /streams.


def test_nginx_own_errors_are_json_in_both_servers(production, tmp_path):
    for server in edge_servers(rendered(production, tmp_path / "out")):
        own = statements(server)
        for wanted in ("error_page 400 494 = @bad_request",
                       "error_page 414 /.eventgate/uri-too-long",
                       "error_page 413 = @too_large", "error_page 429 = @too_many_requests"):
            assert wanted in own, wanted
        found = locations(server)
        for name, status, error in (("@bad_request", 400, "bad_request"),
                                    ("= /.eventgate/uri-too-long", 414, "uri_too_long"),
                                    ("@too_large", 413, "content_too_large"),
                                    ("@too_many_requests", 429, "too_many_requests"),
                                    ("@unavailable", 503, "unavailable")):
            body = found[name]
            assert "default_type application/json" in body, name
            code, answer = json_return(body[-1])
            assert (code, answer["error"]) == (status, error) and answer["message"], name
        assert "internal" in found["= /.eventgate/uri-too-long"]


def test_every_location_with_its_own_error_pages_keeps_them_json(production, tmp_path):
    """A location that sets any error_page inherits none of the server's: each must map nginx's
    own refusals itself (here: through eventgate-proxy.conf), and its 5xx to a fallback."""
    _, tls = edge_servers(rendered(production, tmp_path / "out"))
    found = locations(tls)
    fallbacks = {"/streams": "@stream_unavailable", "= /streams/healthz": "@unavailable",
                 "= /streams/readyz": "@unavailable", "/": "@unavailable"}
    for name, body in found.items():
        if not any(d.startswith("error_page") for d in body):
            continue
        assert name in fallbacks, f"{name} sets error_page: add it to this test"
        for wanted in ("error_page 400 = @bad_request", "error_page 413 = @too_large",
                       "error_page 429 = @too_many_requests",
                       f"error_page 502 503 504 = {fallbacks[name]}"):
            assert wanted in body, (name, wanted)
    # Every path the public may not see answers a JSON 404 with no error_page of its own, so
    # the server's (413 JSON) stay in force there.
    metrics = found["~ ^/(metrics(/|$)|streams/metrics$)"]
    assert not any(d.startswith("error_page") for d in metrics)
    code, answer = json_return(metrics[-1])
    assert code == 404 and answer["error"] == "not_found"
    pattern = re.compile(r"^/(metrics(/|$)|streams/metrics$)")
    for path in ("/metrics", "/metrics/", "/metrics/x", "/streams/metrics"):
        assert pattern.search(path), path
    for path in ("/metricsx", "/streams", "/streams/healthz", "/streams/metrics/x"):
        assert not pattern.search(path), path


def test_stream_fallback_is_a_200_retry_never_a_5xx(production, tmp_path):
    _, tls = edge_servers(rendered(production, tmp_path / "out"))
    fallback = locations(tls)["@stream_unavailable"]
    assert "default_type text/event-stream" in fallback
    assert fallback[-1] == 'return 200 "retry: 2000\\n\\n"'
    assert not any(re.match(r"return [45]", d) for d in fallback)


def test_error_blocks_are_the_development_templates(production, tmp_path):
    """The blocks the production edge shares with deploy/nginx/nginx.conf.tmpl, rendered with the
    same settings, are the same: nginx's own answers, maps, limits, and the metrics 404 body."""
    config = Config(secret_keys=("s" * 40,), publish_keys=("p" * 40,),
                    var_dir=tmp_path / "dev-var", cors_origins=(ORIGIN,),
                    stream_connect_rate=production.stream_connect_rate,
                    stream_connect_burst=production.stream_connect_burst)
    dev_conf = render_stack(config, root=REPO_ROOT, python_bin_dir=Path(sys.executable).parent,
                            foreground=False)
    dev = (dev_conf.parent / "nginx.conf").read_text()
    (dev_server,) = blocks(nginx_block(dev, "http"), "server")
    prod = rendered(production, tmp_path / "out")
    _, tls = edge_servers(prod)
    dev_locations, prod_locations = locations(dev_server), locations(tls)
    for name in SHARED_LOCATIONS:
        assert prod_locations[name] == dev_locations[name], name
    for opening in SHARED_MAPS:
        assert statements(nginx_block(prod, opening)) == statements(nginx_block(dev, opening))

    def errors_and_limits(block: str) -> list[str]:
        # The zones are larger on the edge (many more client addresses): nothing else differs.
        return [re.sub(rf"zone=(\w+):{production.limit_zone_size}\b", r"zone=\1:10m", d)
                for d in statements(block)
                if d.startswith(("error_page", "limit_", "client_header_", "client_body_timeout",
                                 "client_max_body_size", "send_timeout"))]

    assert errors_and_limits(tls) == errors_and_limits(dev_server)
    assert errors_and_limits(nginx_block(prod, "http")) == errors_and_limits(
        nginx_block(dev, "http"))
    metrics = prod_locations["~ ^/(metrics(/|$)|streams/metrics$)"]
    assert metrics[-1] == dev_locations["@not_found"][-1]


# (3) Per-address limits and slow-client timeouts, configurable; 0 is no limit.


def test_per_address_limits_and_timeouts(production, tmp_path):
    production = replace(production, connections_per_address=7, stream_connect_rate=3,
                         stream_connect_burst=9, client_header_timeout_seconds=11,
                         client_body_timeout_seconds=31, send_timeout_seconds=61)
    nginx = rendered(production, tmp_path / "out")
    http = statements(nginx_block(nginx, "http"))
    for wanted in ("limit_conn_zone $binary_remote_addr zone=eventgate_addr:20m",
                   "limit_req_zone $binary_remote_addr zone=eventgate_connect:20m rate=3r/s",
                   "limit_conn_status 429", "limit_req_status 429",
                   "client_header_timeout 11s", "client_body_timeout 31s", "send_timeout 61s"):
        assert wanted in http, wanted
    plain, tls = edge_servers(nginx)
    assert "limit_conn eventgate_addr 7" in statements(tls)
    streams = locations(tls)["/streams"]
    assert "limit_req zone=eventgate_connect burst=9 nodelay" in streams
    assert "send_timeout 61s" in streams
    assert not any(d.startswith("limit_") for d in statements(plain))  # it only redirects

    unlimited = rendered(replace(production, connections_per_address=0, stream_connect_rate=0),
                         tmp_path / "unlimited")
    assert not re.search(r"^\s*limit_(conn|req)(_zone)? ", unlimited, re.MULTILINE)


# (4) CORS on nginx's own stream answers, for the origins the stream pool allows.


def test_cors_on_nginx_own_stream_answers(production, tmp_path):
    nginx = rendered(production, tmp_path / "out")
    assert statements(nginx_block(nginx, "map $http_origin $eventgate_cors_origin")) == [
        'default ""', f'"{ORIGIN}" $http_origin']
    found = locations(edge_servers(nginx)[1])
    for name in ("@stream_unavailable", "@too_many_requests"):
        for wanted in ("add_header Access-Control-Allow-Origin $eventgate_cors_origin always",
                       "add_header Access-Control-Allow-Credentials "
                       "$eventgate_cors_credentials always",
                       'add_header Vary "Origin" always'):
            assert wanted in found[name], (name, wanted)
    programs = conf_d_programs(production, tmp_path)
    for name, program in programs.items():
        assert dict(program.environment)["EVENTGATE_CORS_ORIGINS"] == ORIGIN, name


# (5) X-Request-ID: the caller's only if plain, else one nginx makes.


def test_request_id_is_kept_only_when_plain(production, tmp_path):
    nginx = rendered(production, tmp_path / "out")
    request_ids = statements(nginx_block(nginx, "map $http_x_request_id $eventgate_request_id"))
    assert request_ids == ["default $request_id",
                           '"~^[A-Za-z0-9._:-]{1,128}$" $http_x_request_id']
    proxy = statements((tmp_path / "out" / "nginx" / "eventgate-proxy.conf").read_text())
    assert "proxy_set_header X-Request-ID $eventgate_request_id" in proxy
    # The caller's header is read in the map only: everything else uses the checked id.
    uses = [line.strip() for line in nginx.splitlines() if "$http_x_request_id" in line]
    assert uses == ["map $http_x_request_id $eventgate_request_id {",
                    '"~^[A-Za-z0-9._:-]{1,128}$"  $http_x_request_id;']
    assert "$eventgate_request_id" in nginx.split("log_format", 1)[1].split(";", 1)[0]
    for name, body in locations(edge_servers(nginx)[1]).items():
        if any(d.startswith("proxy_pass") for d in body):
            assert "proxy_set_header X-Request-ID $eventgate_request_id" in body, name


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


# (7) No query string in any log.


def test_logs_never_hold_the_query_string(production, tmp_path):
    nginx = rendered(production, tmp_path / "out")
    log_format = re.search(r"log_format\s+eventgate\s+(.*?);", nginx, re.DOTALL).group(1)
    assert "$uri" in log_format
    for leaky in LEAKY_LOG_VARIABLES:
        assert leaky not in log_format, leaky
    access_logs = re.findall(r"^\s*access_log\s+([^;]+);", nginx, re.MULTILINE)
    assert access_logs and all(line.split()[1] == "eventgate" for line in access_logs)
    assert len(re.findall(r"^\s*log_format ", nginx, re.MULTILINE)) == 1
    # nginx writes the request line into its error log: quiet on /streams, and limit refusals
    # below the error log's level.
    streams = locations(edge_servers(nginx)[1])["/streams"]
    assert f"error_log {production.nginx_log_dir}/error.log crit" in streams
    http = statements(nginx_block(nginx, "http"))
    assert "limit_conn_log_level info" in http and "limit_req_log_level info" in http
    programs = conf_d_programs(production, tmp_path)
    web = gunicorn_settings(shlex.split(programs["eventgate-web"].command))
    assert "%(U)s" in web.access_log_format
    for leaky in ("%(r)s", "%(q)s", "%(f)s", "{referer}i"):
        assert leaky not in web.access_log_format
