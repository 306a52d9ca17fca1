"""The rendered supervisord.conf and nginx.conf hold what reliability.md demands (§3, §4, §7, S-4).

Read back with supervisor's own config parser and gunicorn's own argument parser, so the checks
see what the programs will see (quoting, %% expansion), not what the template text looks like.
"""

from __future__ import annotations

import dataclasses
import re
import runpy
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from gunicorn.workers.ggevent import GeventWorker
from gunicorn.workers.gthread import ThreadWorker

from eventgate.deploy.render import ENV_NAMES, render_stack
from eventgate.shared.config import Config, max_request_bytes
from eventgate.shared.stackredis import StackRedis
from tests.ops.configs import (
    METRICS_LOCATION,
    assert_error_pages_json,
    assert_fallback_map,
    assert_nginx_errors_json,
    directives,
    gunicorn_settings,
    locations,
    longest_stream_head,
    nginx_block,
    supervisor_options,
    with_includes,
)
from tests.stack import REPO_ROOT

GRACEFUL_TIMEOUT = 10


def render(config: Config, foreground: bool = False, **workers: int) -> Path:
    return render_stack(
        config, root=REPO_ROOT, python_bin_dir=Path(sys.executable).parent,
        foreground=foreground, **workers,
    )


def rendered_nginx(conf: Path) -> str:
    """The nginx.conf beside ``conf`` (render's supervisord.conf), includes inlined."""
    return with_includes((conf.parent / "nginx.conf").read_text())


def programs(conf: Path) -> dict:
    options = supervisor_options(conf)
    return {
        process.name: (group.priority, process)
        for group in options.process_group_configs
        for process in group.process_configs
    }


def test_stream_pool_keeps_streams_open(config):
    conf = render(config, stream_workers=3)
    _, stream = programs(conf)["stream"]
    argv = shlex.split(stream.command)
    settings = gunicorn_settings(argv)
    var = config.var_dir.resolve()

    assert argv[1] == "eventgate.stream.wsgi:app"
    assert "--preload" not in argv and settings.preload_app is False
    assert settings.max_requests == 0  # a recycled worker would cut every stream it holds
    assert settings.keepalive == 0
    assert settings.worker_class_str == "eventgate.stream.worker.StreamWorker"
    assert issubclass(settings.worker_class, GeventWorker)  # see stream/worker.py
    assert settings.workers == 3
    assert settings.worker_connections >= 10000
    # Its loopback port (direct calls, metrics), and the Unix socket nginx proxies to.
    assert settings.bind == [f"127.0.0.1:{config.stream_port}", f"unix:{var}/run/stream.sock"]
    assert settings.graceful_timeout == GRACEFUL_TIMEOUT
    assert settings.control_socket == str(var / "run" / "stream.ctl")
    # Loaded as a module of the installed package (no checkout needed); the package __init__
    # files hold no code, so this loads neither Flask nor redis in the master before the worker
    # monkey-patches (the --preload trap): test_gunicorn_confs_load_no_app_in_the_master.
    assert settings.config == "python:eventgate.stream.gunicorn_conf"


@pytest.mark.parametrize("pool", ["web", "stream"])
def test_gunicorn_confs_load_no_app_in_the_master(pool):
    code = (
        "import importlib, sys; "
        f"importlib.import_module('eventgate.{pool}.gunicorn_conf'); "
        "bad = sorted(m for m in ('flask', 'redis', 'werkzeug') if m in sys.modules); "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, check=True, timeout=30)


def test_stream_gunicorn_conf_does_not_undo_the_flags():
    """stream/gunicorn_conf.py is loaded first; it must not turn on preload or max_requests."""
    values = runpy.run_path(str(REPO_ROOT / "stream" / "gunicorn_conf.py"))
    assert not values.get("preload_app", False)
    assert values.get("max_requests", 0) == 0
    assert values.get("worker_class") == "eventgate.stream.worker.StreamWorker"


def test_web_pool_is_blocking_threads_with_its_own_control_socket(config):
    conf = render(config, web_workers=4)
    found = programs(conf)
    web = gunicorn_settings(shlex.split(found["web"][1].command))
    stream = gunicorn_settings(shlex.split(found["stream"][1].command))

    # Blocking threads (never gevent) that keep nginx's upstream connections alive, and keep
    # them longer than nginx does (its upstream keepalive_timeout): nginx ends idle ones.
    # (gunicorn's gthread, serving a busy kept-alive connection on one thread: web/worker.py)
    assert web.worker_class_str == "eventgate.web.worker.WebWorker" and web.threads == 4
    assert issubclass(web.worker_class, ThreadWorker)
    nginx = rendered_nginx(conf)
    upstream = directives(nginx_block(nginx, "upstream eventgate_web"))
    timeout = next(d for d in upstream if d.startswith("keepalive_timeout")).split()[1]
    assert web.keepalive > int(timeout.removesuffix("s"))
    location = directives(nginx_block(nginx, "location /"))
    assert "proxy_http_version 1.1" in location and 'proxy_set_header Connection ""' in location
    assert web.workers == 4
    assert web.bind == [f"127.0.0.1:{config.web_port}"]
    assert web.control_socket == str(config.var_dir.resolve() / "run" / "web.ctl")
    assert web.control_socket != stream.control_socket
    assert not web.preload_app


def test_the_bench_runs_the_web_worker_the_stack_runs(config):
    """bench/run.py's WEB_FLAGS: the publish figures are those of the deployed web worker."""
    bench = runpy.run_path(str(REPO_ROOT / "bench" / "run.py"))
    _, web = programs(render(config))["web"]
    deployed = gunicorn_settings(shlex.split(web.command))
    benched = gunicorn_settings(["gunicorn", "eventgate.web.wsgi:app", *bench["WEB_FLAGS"]])
    for name in ("config", "worker_class_str", "threads", "keepalive", "timeout",
                 "graceful_timeout", "accesslog", "access_log_format", "preload_app"):
        assert getattr(benched, name) == getattr(deployed, name), name


def test_web_access_log_has_the_path_but_never_the_query(config):
    _, web = programs(render(config))["web"]
    settings = gunicorn_settings(shlex.split(web.command))
    assert settings.accesslog == "-"
    log_format = settings.access_log_format
    assert "%(U)s" in log_format
    for leaky in ("%(r)s", "%(q)s", "%(f)s", "{referer}i"):
        assert leaky not in log_format


def test_programs_start_in_order_and_stop_as_a_group(config):
    found = programs(render(config))
    assert set(found) == {"redis", "web", "stream", "nginx"}
    priority = {name: value[0] for name, value in found.items()}
    assert priority["redis"] < priority["web"] < priority["nginx"]
    assert priority["redis"] < priority["stream"] < priority["nginx"]
    var = config.var_dir.resolve()
    for name, (_, process) in found.items():
        assert process.autorestart is not False, name
        assert process.autorestart.__name__ == "RestartUnconditionally", name
        assert process.startretries >= 10, name
        assert process.stopsignal == 15, name
        assert process.stopasgroup and process.killasgroup, name
        assert process.redirect_stderr, name
        assert process.stdout_logfile == str(var / "log" / f"{name}.log"), name
        assert process.stdout_logfile_maxbytes > 0 and process.stdout_logfile_backups > 0, name
    for name in ("web", "stream"):
        process = found[name][1]
        assert process.stopwaitsecs >= GRACEFUL_TIMEOUT + 5, name  # else SIGKILL mid-drain
        # the var dir, never the checkout: the package comes from the venv (gunicorn puts its
        # working directory first on sys.path)
        assert process.directory == str(var), name


def test_supervisord_paths_and_limits(config):
    var = config.var_dir.resolve()
    options = supervisor_options(render(config, foreground=True))
    assert options.nodaemon is True
    assert supervisor_options(render(config, foreground=False)).nodaemon is False
    assert options.logfile == str(var / "log" / "supervisord.log")
    assert options.pidfile == str(var / "run" / "supervisord.pid")
    server = options.configroot.supervisord.server_configs[0]
    assert server["file"] == str(var / "run" / "supervisor.sock")
    assert options.minfds >= 4096
    for name in ("run", "log", "redis", "nginx", "conf"):
        assert (var / name).is_dir()


def test_redis_keeps_an_append_only_file(config):
    _, redis_program = programs(render(config))["redis"]
    argv = shlex.split(redis_program.command)
    options = dict(zip(argv[1::2], argv[2::2], strict=True))
    assert options["--port"] == str(config.redis_port)
    assert options["--bind"] == "127.0.0.1"
    assert options["--appendonly"] == "yes"
    assert options["--appendfsync"] == "everysec"
    assert options["--save"] == ""
    assert options["--dir"] == str(config.var_dir.resolve() / "redis")


@pytest.mark.parametrize("mode", ["single", "sentinel", "cluster"])
def test_every_setting_reaches_the_apps_and_round_trips(config, mode):
    """What the apps read back from the rendered environment is the config that was rendered."""
    if mode != "single":
        config = mode_config(config, mode)
    secret_fields = {"secret_keys", "publish_keys", "ops_key"}
    fields = {field.name for field in dataclasses.fields(Config)} - secret_fields
    assert fields == set(ENV_NAMES), "a Config field has no EVENTGATE_* name in deploy/render.py"

    found = programs(render(config))
    for name in ("web", "stream"):
        environ = dict(found[name][1].environment)
        assert not any("KEY" in key for key in environ), "a secret went into the rendered config"
        environ.update(EVENTGATE_SECRET_KEY=config.secret_keys[0],
                       EVENTGATE_PUBLISH_KEY=config.publish_keys[0])
        expected = dataclasses.replace(config, var_dir=config.var_dir.resolve())
        assert Config.from_env(environ) == expected


def test_no_secret_is_rendered(config):
    with_password = dataclasses.replace(config, redis_url="redis://:hunter2-redis@127.0.0.1:1/0")
    conf = render(with_password)
    for path in (conf, conf.parent / "nginx.conf"):
        text = path.read_text()
        for secret in (*config.secret_keys, *config.publish_keys, "hunter2-redis"):
            assert secret not in text, f"{secret} in {path.name}"


def test_streams_location_passes_events_through_at_once(config):
    nginx = rendered_nginx(render(config))
    streams = directives(nginx_block(nginx, "location /streams"))
    for wanted in (
        "proxy_pass http://eventgate_stream",
        "proxy_http_version 1.1",
        'proxy_set_header Connection ""',
        "proxy_buffering off",
        "proxy_pass_header X-Accel-Buffering",  # for a proxy in front: it must not buffer
        "proxy_cache off",
        "gzip off",
        "proxy_read_timeout 1h",
        "proxy_send_timeout 1h",
        "error_page 502 503 504 = @stream_unavailable",
        # a full worker's 503: the pool's other listener, then the fallback (named to the pool)
        "proxy_next_upstream error timeout http_503",
        "proxy_set_header X-Eventgate-Retry-Location @stream_unavailable",
    ):
        assert wanted in streams, wanted
    headers = [d for d in streams if d.startswith("proxy_set_header")]
    assert any("X-Request-ID" in d for d in headers)
    assert any("X-Forwarded-For" in d for d in headers)

    fallback = directives(nginx_block(nginx, "location @stream_unavailable"))
    assert "default_type text/event-stream" in fallback
    assert 'return 200 "retry: $eventgate_stream_retry\\n\\n"' in fallback
    assert 'add_header Cache-Control "no-cache" always' in fallback
    assert_fallback_map(nginx)


def test_proxied_locations_share_one_include_and_keep_errors_json(config):
    """The proxy settings every proxied location shares are written once, in the
    eventgate-proxy.conf rendered beside nginx.conf (the production edge's own template), and
    a location with its own error_page still answers nginx's refusals as JSON."""
    conf = render(config)
    own = (conf.parent / "nginx.conf").read_text()
    include = f"include {conf.parent}/eventgate-proxy.conf"
    proxied = {name: body for name, body in locations(nginx_block(own, "server")).items()
               if any(d.startswith("proxy_pass") for d in body)}
    assert set(proxied) == {"= /streams/healthz", "= /streams/readyz", "= /streams/history",
                            "/streams", "/"}
    for name, body in proxied.items():
        assert include in body, name
        assert not any(d.startswith(("proxy_http_version", "proxy_connect_timeout"))
                       for d in body), name
    assert "X-Request-ID $eventgate_request_id" not in own
    inlined = locations(nginx_block(rendered_nginx(conf), "server"))
    assert_error_pages_json(
        {name: inlined[name] for name in proxied},
        {"/streams": "@stream_unavailable", "= /streams/healthz": "@unavailable",
         "= /streams/readyz": "@unavailable", "= /streams/history": "@unavailable",
         "/": "@unavailable"})


def test_nginx_own_errors_are_json_from_the_errors_file(config):
    """nginx's own answers come from the eventgate-errors.conf rendered beside nginx.conf (the
    production edge's own template) and are JSON; the metrics paths set no error_page of their
    own, so that a body too large or a limited request there is answered JSON too."""
    conf = render(config)
    own = nginx_block((conf.parent / "nginx.conf").read_text(), "server")
    assert f"include {conf.parent}/eventgate-errors.conf" in directives(own)
    server = nginx_block(rendered_nginx(conf), "server")
    assert_nginx_errors_json(server)
    assert locations(server)[METRICS_LOCATION] == ["return 404"]
    assert {"@stream_unavailable", "@unavailable"} <= set(locations(server))


def test_upstreams_and_listen_are_loopback_only(config):
    nginx = rendered_nginx(render(config))
    assert directives(nginx_block(nginx, "upstream eventgate_web")) == [
        f"server 127.0.0.1:{config.web_port}", "keepalive 16", "keepalive_timeout 60s"
    ]
    assert directives(nginx_block(nginx, "upstream eventgate_stream")) == [
        f"server unix:{config.var_dir.resolve()}/run/stream.sock max_fails=0",
        f"server 127.0.0.1:{config.stream_port} backup max_fails=0",
    ]
    listens = re.findall(r"^\s*listen\s+([^;]+);", nginx, re.MULTILINE)
    assert listens == [f"127.0.0.1:{config.port}"]
    web = directives(nginx_block(nginx, "location /"))
    assert "proxy_pass http://eventgate_web" in web
    http = directives(nginx_block(nginx, "http"))
    assert f"client_max_body_size {max_request_bytes(config)}" in http
    assert "client_header_timeout 10s" in http


def test_a_var_dir_too_deep_for_a_unix_socket_proxies_streams_over_loopback(config):
    deep = dataclasses.replace(config, var_dir=config.var_dir / ("d" * 100))
    conf = render(deep)
    nginx = rendered_nginx(conf)
    assert directives(nginx_block(nginx, "upstream eventgate_stream")) == [
        f"server 127.0.0.1:{config.stream_port}"
    ]
    stream = gunicorn_settings(shlex.split(programs(conf)["stream"][1].command))
    assert stream.bind == [f"127.0.0.1:{config.stream_port}"]


def test_the_pools_longest_stream_head_fits_nginx_stream_buffer(config):
    """Unbuffered, nginx holds one proxy_buffer_size buffer per stream and needs the whole
    response head in it: kept small for memory, it must still take the longest head."""
    nginx = rendered_nginx(render(config))
    streams = directives(nginx_block(nginx, "location /streams"))
    size = next(d for d in streams if d.startswith("proxy_buffer_size")).split()[1]
    assert size.endswith("k")
    head = longest_stream_head()
    assert len(head) < int(size[:-1]) * 1024, len(head)


def test_nginx_logs_never_hold_the_query_string(config):
    nginx = rendered_nginx(render(config))
    log_format = re.search(r"log_format\s+eventgate\s+(.*?);", nginx, re.DOTALL).group(1)
    assert "$uri" in log_format
    for leaky in ("$request ", "$request\"", "$request_uri", "$args", "$query_string", "$arg_",
                  "$http_referer"):
        assert leaky not in log_format, leaky
    var = config.var_dir.resolve()
    assert f"access_log {var}/log/nginx-access.log eventgate" in directives(
        nginx_block(nginx, "http")
    )


def test_nginx_file_limits_cover_its_connections(config):
    conf = render(config)
    nginx = rendered_nginx(conf)
    main = directives(nginx)
    rlimit = int(next(d for d in main if d.startswith("worker_rlimit_nofile")).split()[1])
    connections = int(directives(nginx_block(nginx, "events"))[0].split()[1])
    assert connections >= 1024
    assert rlimit >= 2 * connections  # every proxied stream holds two connections
    assert rlimit <= supervisor_options(conf).minfds


def test_nginx_accepts_the_rendered_config(config):
    nginx_conf = render(config).parent / "nginx.conf"
    var = config.var_dir.resolve()
    result = subprocess.run(
        ["nginx", "-t", "-c", str(nginx_conf), "-p", str(var / "nginx")],
        capture_output=True, text=True, timeout=30, check=False,
        env={"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
    )
    assert result.returncode == 0, result.stderr


def test_deploy_imports_neither_flask_nor_gevent():
    code = (
        "import sys, eventgate.deploy.stack, eventgate.deploy.production; "
        "bad = [m for m in ('flask', 'gevent') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, check=True, timeout=30)


# -- the stack's Redis in each EVENTGATE_REDIS_MODE (deploy/redisprograms.py) --------------------

def mode_config(config: Config, mode: str) -> Config:
    """``config`` in ``mode``, with the URL Config.from_env would give it."""
    return dataclasses.replace(config, redis_mode=mode,
                               redis_url=StackRedis(mode, config.redis_port).url)


def sentinel_config(config: Config) -> Config:
    return mode_config(config, "sentinel")


def redis_options(command: str) -> dict[str, str]:
    """redis-server's ``--name value`` options in a program's command (after the node wrapper)."""
    argv = shlex.split(command)
    argv = argv[argv.index("--") + 1:] if "--" in argv else argv
    return dict(zip(argv[1::2], argv[2::2], strict=True))


def test_single_redis_is_bounded_and_refuses_writes_when_full(config):
    _, redis_program = programs(render(dataclasses.replace(config, redis_maxmemory="1gb")))["redis"]
    options = redis_options(redis_program.command)
    assert options["--maxmemory"] == "1gb"
    assert options["--maxmemory-policy"] == "noeviction"  # a full Redis refuses, never evicts


def test_sentinel_mode_runs_three_data_nodes_and_three_sentinels(config):
    config = sentinel_config(config)
    found = programs(render(config))
    data = ["redis-1", "redis-2", "redis-3"]
    sentinels = ["sentinel-1", "sentinel-2", "sentinel-3"]
    assert set(found) == {*data, *sentinels, "web", "stream", "nginx"}
    var = config.var_dir.resolve()
    stack = StackRedis("sentinel", config.redis_port)
    for name, port in zip(data, stack.data_ports, strict=True):
        priority, process = found[name]
        argv = shlex.split(process.command)
        assert argv[1:3] == ["-m", "eventgate.deploy.redisnode"], name
        options = redis_options(process.command)
        assert options["--port"] == str(port) and options["--bind"] == "127.0.0.1", name
        assert options["--appendonly"] == "yes" and options["--appendfsync"] == "everysec", name
        assert options["--maxmemory"] == "256mb", name
        assert options["--maxmemory-policy"] == "noeviction", name
        assert options["--pidfile"] == str(var / "run" / f"{name}.pid"), name
        # decided at each start from the sentinels' files (deploy/redisnode.py), never rendered
        assert "--replicaof" not in options, name
        assert priority < found["sentinel-1"][0] < found["web"][0], name
    for name, port in zip(sentinels, stack.sentinel_ports, strict=True):
        argv = shlex.split(found[name][1].command)
        assert argv[2:] == ["--sentinel"], name
        conf = Path(argv[1]).read_text()
        assert f"\nport {port}\n" in conf and "\nbind 127.0.0.1\n" in conf, name
        assert f"sentinel monitor eventgate 127.0.0.1 {stack.data_ports[0]} 2\n" in conf, name
    for name, (_, process) in found.items():
        assert process.autorestart.__name__ == "RestartUnconditionally", name
        assert process.stdout_logfile == str(var / "log" / f"{name}.log"), name
    for name in ("web", "stream"):
        environ = dict(found[name][1].environment)
        assert environ["EVENTGATE_REDIS_URL"] == (
            f"redis+sentinel://127.0.0.1:{stack.sentinel_ports[0]},"
            f"127.0.0.1:{stack.sentinel_ports[1]},127.0.0.1:{stack.sentinel_ports[2]}/eventgate/0"
        )
        assert environ["EVENTGATE_REDIS_MODE"] == "sentinel"


def test_cluster_mode_runs_six_cluster_nodes_and_creates_the_cluster_once(config):
    config = mode_config(config, "cluster")
    found = programs(render(config))
    nodes = [f"redis-{index}" for index in range(1, 7)]
    assert set(found) == {*nodes, "redis-cluster-create", "web", "stream", "nginx"}
    var = config.var_dir.resolve()
    stack = StackRedis("cluster", config.redis_port)
    for name, port, bus in zip(nodes, stack.data_ports, stack.bus_ports, strict=True):
        priority, process = found[name]
        assert shlex.split(process.command)[1:3] == ["-m", "eventgate.deploy.redisnode"], name
        options = redis_options(process.command)
        assert options["--port"] == str(port) and options["--bind"] == "127.0.0.1", name
        assert options["--cluster-enabled"] == "yes", name
        assert options["--cluster-port"] == str(bus), name
        folder = var / "redis" / f"cluster-{port}"
        assert options["--dir"] == str(folder) and folder.is_dir(), name
        assert options["--cluster-config-file"] == str(folder / "nodes.conf"), name
        assert options["--appendonly"] == "yes", name
        assert options["--maxmemory"] == "256mb", name
        assert options["--maxmemory-policy"] == "noeviction", name
        assert options["--pidfile"] == str(var / "run" / f"{name}.pid"), name
        assert "--replicaof" not in options, name
        assert process.autorestart.__name__ == "RestartUnconditionally", name
        assert priority < found["redis-cluster-create"][0] < found["web"][0], name
    _, create = found["redis-cluster-create"]
    argv = shlex.split(create.command)
    assert argv[1:3] == ["-m", "eventgate.deploy.rediscluster"]
    assert argv[-6:] == [f"127.0.0.1:{port}" for port in stack.data_ports]
    assert (create.autorestart, create.startsecs) == (False, 0)  # once per start, exit 0
    assert create.stdout_logfile == str(var / "log" / "redis-cluster-create.log")
    for name in ("web", "stream"):
        environ = dict(found[name][1].environment)
        assert environ["EVENTGATE_REDIS_URL"] == stack.url
        assert environ["EVENTGATE_REDIS_MODE"] == "cluster"


def test_a_killed_primary_stays_down_past_down_after(config):
    """supervisord restarts a crashed program at once; the node wrapper holds it down longer
    than the sentinels need to call it down, or a killed primary would never fail over."""
    _, node = programs(render(sentinel_config(config)))["redis-1"]
    argv = shlex.split(node.command)
    hold = float(next(a for a in argv if a.startswith("--hold-seconds=")).split("=")[1])
    conf = Path(next(a for a in argv if a.startswith("--sentinel-conf=")).split("=")[1])
    down_after = int(re.search(r"down-after-milliseconds eventgate (\d+)",
                               conf.read_text()).group(1))
    assert 2000 <= down_after <= 5000
    assert hold >= 2 * down_after / 1000


def test_sentinel_files_are_written_once_then_left_to_the_sentinels(config):
    """A sentinel rewrites its file (the primary it follows after a failover); rendering again
    (the next `make up`) must not put back the first primary."""
    config = sentinel_config(config)
    argv = shlex.split(programs(render(config))["sentinel-1"][1].command)
    conf = Path(argv[1])
    port = StackRedis("sentinel", config.redis_port).data_ports[1]
    rewritten = re.sub(r"monitor eventgate 127.0.0.1 \d+", f"monitor eventgate 127.0.0.1 {port}",
                       conf.read_text())
    conf.write_text(rewritten)
    render(config)
    assert conf.read_text() == rewritten


@pytest.mark.parametrize("mode", ["single", "sentinel", "cluster"])
def test_a_redis_of_the_users_own_runs_no_redis_program(config, mode):
    own = dataclasses.replace(config, redis_mode=mode, redis_url="redis://10.1.2.3:6379/0")
    found = programs(render(own))
    assert set(found) == {"web", "stream", "nginx"}
    assert dict(found["web"][1].environment)["EVENTGATE_REDIS_URL"] == "redis://10.1.2.3:6379/0"
    assert not list((own.var_dir / "redis").glob("sentinel-*"))


def test_the_outbox_relay_runs_only_with_an_outbox(config):
    assert "relay" not in programs(render(config))

    # Relative, as `EVENTGATE_OUTBOX_URL=sqlite:///var/outbox.db make run` gives it: the
    # programs run in var/, so it is rendered from the root the stack is rendered in.
    with_outbox = dataclasses.replace(config, outbox_url="sqlite:///var/outbox.db",
                                      outbox_metrics_port=18002)
    priority, relay = programs(render(with_outbox))["relay"]
    var = config.var_dir.resolve()

    assert shlex.split(relay.command) == [str(Path(sys.executable).parent / "eventgate"), "relay"]
    assert relay.autorestart is not False and relay.stopsignal == 15  # SIGTERM
    assert relay.stdout_logfile == str(var / "log" / "relay.log")
    assert relay.directory == str(var)
    environment = dict(relay.environment)
    assert environment["EVENTGATE_OUTBOX_URL"] == f"sqlite:///{REPO_ROOT / 'var' / 'outbox.db'}"
    assert environment["EVENTGATE_OUTBOX_METRICS_PORT"] == "18002"
    _, web = programs(render(with_outbox))["web"]
    assert priority >= web.priority


def test_an_outbox_url_with_a_password_is_not_rendered(config):
    url = "postgresql+psycopg://app:hunter2-db@127.0.0.1:5432/app"
    conf = render(dataclasses.replace(config, outbox_url=url))
    assert "relay" in programs(conf)
    assert "hunter2-db" not in conf.read_text()
