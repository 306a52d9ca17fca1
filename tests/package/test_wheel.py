"""The wheel alone: what it installs, and that a fresh venv with no checkout can publish, run the
``eventgate`` command, serve both pools with their templates and static files, and render the
production files (the contract's "Installing the package")."""

from __future__ import annotations

import email
import json
import zipfile
from pathlib import Path

from eventgate.shared import keys
from eventgate.shared.version import __version__
from tests.clients import StreamClient, stream_path
from tests.stack import REPO_ROOT as ROOT
from tests.stack import http_get

#: Only the server extra brings these; the base install must work without any of them.
SERVER_ONLY = ("gevent", "gunicorn", "supervisor", "prometheus_client", "sseclient", "tqdm")


def wheel_files(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as archive:
        return archive.namelist()


def settings(redis_server, secret_keys, publish_key, home: Path) -> dict[str, str]:
    """EVENTGATE_* for a pool of a venv, as the stream tests give theirs (tests/stream/pool.py)."""
    return {"EVENTGATE_SECRET_KEY": ",".join(secret_keys), "EVENTGATE_PUBLISH_KEY": publish_key,
            "EVENTGATE_REDIS_URL": redis_server.url, "EVENTGATE_VAR_DIR": str(home / "var"),
            "EVENTGATE_HEARTBEAT": "1", "EVENTGATE_RETRY_MS": "300"}


# --- the wheel ---------------------------------------------------------------------------------


def test_the_wheel_installs_one_top_level_package(wheel):
    files = wheel_files(wheel)

    assert {name.split("/")[0] for name in files} == {
        "eventgate", f"eventgate-{__version__}.dist-info"}
    with zipfile.ZipFile(wheel) as archive:
        record = archive.read(f"eventgate-{__version__}.dist-info/RECORD").decode()
    assert sorted(line.split(",")[0] for line in record.splitlines()) == sorted(files)
    for package in ("web", "web/api", "stream", "shared", "deploy"):
        assert f"eventgate/{package}/__init__.py" in files


def test_the_wheel_holds_the_templates_static_files_and_deploy_templates(wheel):
    data = sorted(
        [f"eventgate/web/{p.relative_to(ROOT / 'web')}" for folder in ("templates", "static")
         for p in (ROOT / "web" / folder).rglob("*") if p.is_file()]
        + [f"eventgate/deploy/{p.relative_to(ROOT / 'deploy')}"
           for p in (ROOT / "deploy").rglob("*.tmpl")])

    assert "eventgate/web/templates/demo.html" in data
    assert "eventgate/deploy/production/supervisor/eventgate.conf.tmpl" in data
    assert set(data) <= set(wheel_files(wheel))


def test_the_wheels_version_is_the_packages(wheel):
    assert wheel.name.startswith(f"eventgate-{__version__}-")
    with zipfile.ZipFile(wheel) as archive:
        meta = email.message_from_bytes(
            archive.read(f"eventgate-{__version__}.dist-info/METADATA"))
    assert meta["Version"] == __version__


# --- pip install eventgate -----------------------------------------------------------------------

_PUBLIC_API = f"""
import importlib.util, sys
import eventgate
from eventgate import EventGate, Publisher, ChannelTokens, Config, EventgateError, IssuedToken
for name in eventgate.__all__:
    if name in eventgate._EXTRAS:  # needs an extra: a clear ImportError naming it
        try:
            getattr(eventgate, name)
        except ImportError as error:
            assert f"eventgate[{{eventgate._EXTRAS[name]}}]" in str(error), error
        else:
            raise AssertionError(name + " resolved without its extra")
    else:
        getattr(eventgate, name)
print(eventgate.__file__)
print(eventgate.__version__)
print(sorted(m for m in {SERVER_ONLY!r} if importlib.util.find_spec(m) is not None))
"""


def test_the_base_install_has_the_public_api_and_nothing_of_the_server(base_venv):
    where, version, server_modules = base_venv.python(_PUBLIC_API).splitlines()

    assert Path(where).is_relative_to(base_venv.path)
    assert version == __version__
    assert server_modules == "[]"
    assert base_venv.run("python", "-c", "import gevent").returncode != 0


def test_a_job_worker_publishes_in_two_lines(base_venv, redis_server, channel):
    code = ("from eventgate import Publisher\n"
            f"print(Publisher.from_url({redis_server.url!r}).publish("
            f"{channel!r}, {{'state': 'paid'}}, 'order.updated'))")

    event_id = base_venv.python(code).strip()

    [(stored_id, fields)] = redis_server.client().xrange(keys.log_key(channel))
    assert stored_id.decode() == event_id
    assert fields[b"type"] == b"order.updated"
    assert json.loads(fields[b"data"]) == {"state": "paid"}


def test_the_command_runs(base_venv):
    result = base_venv.run("eventgate", "--help")

    assert result.returncode == 0, result.stderr
    assert "publish" in result.stdout


def test_a_server_command_without_the_extra_says_what_to_install(base_venv, secret_keys,
                                                                 publish_key):
    result = base_venv.run(
        "eventgate", "tail", "x", EVENTGATE_SECRET_KEY=secret_keys[0],
        EVENTGATE_PUBLISH_KEY=publish_key, EVENTGATE_VAR_DIR=str(base_venv.home / "var"))

    assert result.returncode != 0
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert 'pip install "eventgate[server]"' in result.stderr


# --- pip install "eventgate[server]" -------------------------------------------------------------


def test_the_installed_stream_pool_serves_a_stream(server_venv, serve, redis_server, secret_keys,
                                                   publish_key, channel):
    env = settings(redis_server, secret_keys, publish_key, server_venv.home)
    pool = serve("eventgate.stream.wsgi:app", "python:eventgate.stream.gunicorn_conf",
                 "--worker-class", "eventgate.stream.worker.StreamWorker", "--keep-alive", "0",
                 "--max-requests", "0", **env)
    pool.ready(lambda: json.loads(http_get(f"{pool.url}/streams/healthz")[2])["redis_connected"],
              "the stream pool of the server venv")
    token = server_venv.python(
        "from eventgate import ChannelTokens, Config\n"
        f"print(ChannelTokens.from_config(Config.from_env()).issue([{channel!r}]).token)",
        **env).strip()

    client = StreamClient(pool.port, stream_path(token)).start()
    try:
        assert client.status == 200
        pool.ready(lambda: json.loads(http_get(f"{pool.url}/streams/healthz")[2])["streams"] == 1,
                  "the stream to open")
        event_id = server_venv.python(
            "from eventgate import Publisher, Config\n"
            f"print(Publisher.from_config(Config.from_env()).publish({channel!r}, 'hello'))",
            **env).strip()
        [event] = client.wait_events(1)
    finally:
        client.close()
    assert (event.last_event_id, event.type, event.data) == (event_id, "message", '"hello"')


def test_the_installed_web_app_serves_its_page_and_static_files(server_venv, serve, redis_server,
                                                               secret_keys, publish_key):
    env = settings(redis_server, secret_keys, publish_key, server_venv.home)
    web = serve("eventgate.web.wsgi:app", "python:eventgate.web.gunicorn_conf",
                "--worker-class", "eventgate.web.worker.WebWorker", "--threads", "2", **env)
    web.ready(lambda: http_get(f"{web.url}/healthz")[0] == 200, "the web pool of the server venv")

    status, _, page = http_get(f"{web.url}/")
    assert status == 200, page
    for name in ("eventgate.js", "demo.js"):  # the shared-stream script, and the demo's
        assert f"/static/{name}".encode() in page
        status, _, script = http_get(f"{web.url}/static/{name}")
        assert status == 200
        assert script == (ROOT / "web" / "static" / name).read_bytes()


def test_the_installed_package_renders_the_production_files(server_venv):
    out = server_venv.home / "production"
    result = server_venv.run(
        "python", "-m", "eventgate.deploy.production", "render", "--out", str(out),
        "--server-name", "events.example.test", "--stream-node", "127.0.0.1:8001",
        "--web-node", "127.0.0.1:8000", "--tls-certificate", "/etc/ssl/eventgate.pem",
        "--tls-certificate-key", "/etc/ssl/eventgate.key")

    assert result.returncode == 0, result.stderr
    supervisor = (out / "supervisor" / "eventgate.conf").read_text()
    assert "eventgate.stream.wsgi:app -c python:eventgate.stream.gunicorn_conf" in supervisor
    assert "eventgate.web.wsgi:app -c python:eventgate.web.gunicorn_conf" in supervisor
    assert "server_name events.example.test" in (out / "nginx" / "nginx.conf").read_text()
    for name in ("eventgate-proxy.conf", "eventgate-errors.conf"):
        assert "${" not in (out / "nginx" / name).read_text()
