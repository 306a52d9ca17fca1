"""The production edge's nginx.conf (deploy/production/), rendered with loopback addresses into
a temporary directory: nginx itself accepts it (``nginx -t``), and the sizes hold up.

The edge has the development stack's hardening (docs/security.md): the app's own body limit,
JSON for nginx's own errors (a ``retry:`` stream on /streams), per-address limits and slow-client
timeouts, CORS on nginx's own stream answers, plain request ids only, no query string in a log;
the blocks it shares with the development template are checked to be the same.
test_production_edge.py runs the rendered edge and asks it; test_production_render.py covers
the app nodes' supervisor file and the render command."""

from __future__ import annotations

import dataclasses
import re
import shlex
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from eventgate.deploy.render import (
    APP_SETTINGS,
    EDGE_LIMITS,
    NGINX_ERRORS_CONF,
    NginxSettings,
    Production,
    render_production,
    render_stack,
)
from eventgate.shared.config import Config, max_request_bytes
from tests.ops.configs import (
    METRICS_LOCATION,
    assert_error_pages_json,
    assert_fallback_map,
    assert_nginx_errors_json,
    blocks,
    directives,
    gunicorn_settings,
    locations,
    nginx_block,
    statements,
    with_includes,
)
from tests.ops.production import (
    ORIGIN,
    PATH,
    app_config,
    conf_d_programs,
    edge_servers,
    rendered,
)
from tests.stack import REPO_ROOT

SHARED_MAPS = ("map $http_x_request_id $eventgate_request_id",
               "map $http_origin $eventgate_cors_origin",
               "map $eventgate_cors_origin $eventgate_cors_credentials",
               "map $request_id $eventgate_stream_retry")
LEAKY_LOG_VARIABLES = ("$request ", "$request\"", "$request'", "$request_uri", "$args",
                       "$query_string", "$arg_", "$http_referer", "$request_body")


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
                   "error_page 502 503 504 = @stream_unavailable",
                   # a full node's 503: the next node, then the fallback (named to the node)
                   "proxy_next_upstream error timeout http_502 http_503",
                   "proxy_set_header X-Eventgate-Retry-Location @stream_unavailable"):
        assert wanted in streams
    proxy = (tmp_path / "out" / "nginx" / "eventgate-proxy.conf").read_text()
    assert "proxy_set_header X-Request-ID $eventgate_request_id;" in proxy
    assert "$request_uri" not in nginx.split("log_format", 1)[1].split(";", 1)[0]


def test_listens_where_told(production, tmp_path):
    for address, wanted in (("", ["443 ssl http2", "[::]:443 ssl http2"]),
                            ("10.0.0.1", ["10.0.0.1:443 ssl http2"]),
                            ("[::1]", ["[::1]:443 ssl http2"])):
        _, tls = edge_servers(rendered(replace(production, listen_address=address),
                                       tmp_path / "out"))
        assert [d.removeprefix("listen ") for d in statements(tls)
                if d.startswith("listen")] == wanted, address


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
        assert_nginx_errors_json(server)


def test_every_location_with_its_own_error_pages_keeps_them_json(production, tmp_path):
    """A location that sets any error_page inherits none of the server's: each must map nginx's
    own refusals itself (here: through eventgate-proxy.conf), and its 5xx to a fallback."""
    _, tls = edge_servers(rendered(production, tmp_path / "out"))
    found = locations(tls)
    fallbacks = {"/streams": "@stream_unavailable", "= /streams/healthz": "@unavailable",
                 "= /streams/readyz": "@unavailable", "= /streams/history": "@unavailable",
                 "/": "@unavailable"}
    assert_error_pages_json(found, fallbacks)
    # Every path the public may not see is a 404 with no error_page of its own, so the
    # server's stay in force there: @not_found, and a JSON 413 or 429.
    assert found[METRICS_LOCATION] == ["return 404"]
    assert "error_page 404 = @not_found" in statements(tls)
    pattern = re.compile(r"^/(metrics(/|$)|streams/metrics$)")
    for path in ("/metrics", "/metrics/", "/metrics/x", "/streams/metrics"):
        assert pattern.search(path), path
    for path in ("/metricsx", "/streams", "/streams/healthz", "/streams/metrics/x"):
        assert not pattern.search(path), path


def test_stream_fallback_is_a_200_retry_never_a_5xx(production, tmp_path):
    nginx = rendered(production, tmp_path / "out")
    _, tls = edge_servers(nginx)
    fallback = locations(tls)["@stream_unavailable"]
    assert "default_type text/event-stream" in fallback
    assert fallback[-1] == 'return 200 "retry: $eventgate_stream_retry\\n\\n"'
    assert not any(re.match(r"return [45]", d) for d in fallback)
    assert_fallback_map(nginx)


def test_error_blocks_are_the_development_templates(production, tmp_path):
    """The development and the production nginx answer errors from one file, rendered from one
    template, that each server includes; neither nginx.conf writes an error answer of its own.
    What the two share besides, rendered with the same settings, is the same: maps, limits,
    the error_page lines, the metrics location."""
    config = Config(secret_keys=("s" * 40,), publish_keys=("p" * 40,),
                    var_dir=tmp_path / "dev-var", cors_origins=(ORIGIN,),
                    stream_connect_rate=production.stream_connect_rate,
                    stream_connect_burst=production.stream_connect_burst)
    dev_conf = render_stack(config, root=REPO_ROOT, python_bin_dir=Path(sys.executable).parent,
                            foreground=False)
    dev_own = (dev_conf.parent / "nginx.conf").read_text()
    prod = rendered(production, tmp_path / "out")
    prod_own = (tmp_path / "out" / "nginx" / "nginx.conf").read_text()
    errors = (dev_conf.parent / NGINX_ERRORS_CONF).read_text()
    assert (tmp_path / "out" / "nginx" / NGINX_ERRORS_CONF).read_text() == errors
    for own, conf_dir in ((dev_own, dev_conf.parent), (prod_own, production.nginx_conf_dir)):
        for server in blocks(nginx_block(own, "http"), "server"):
            assert f"include {conf_dir}/{NGINX_ERRORS_CONF}" in statements(server)
            # Each error answer is in the errors file only: here, no named location, no JSON
            # body, and no error_page but a proxied location's 5xx to its fallback.
            assert not [name for name in locations(server) if name.startswith("@")]
            assert "application/json" not in server and not re.search(r"return \d+ '", server)
            assert all(re.fullmatch(r"error_page 502 503 504 = @\w+", d)
                       for body in locations(server).values() for d in body
                       if d.startswith("error_page"))
            assert not [d for d in statements(server) if d.startswith("error_page")]
    assert set(locations(errors)) >= {"@not_found", "@stream_unavailable", "@unavailable"}

    dev = with_includes(dev_own)
    (dev_server,) = blocks(nginx_block(dev, "http"), "server")
    _, tls = edge_servers(prod)
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
    assert locations(tls)[METRICS_LOCATION] == locations(dev_server)[METRICS_LOCATION]


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
