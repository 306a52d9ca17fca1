"""``flask eventgate …``: EventGate.init_app adds the eventgate commands to the app's command
line, with the app's own Config (never the environment's), run with Flask's CliRunner against
the session's real redis."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from pathlib import Path

from eventgate.cli import cli
from eventgate.shared import keys
from eventgate.shared.tokens import ChannelTokens
from tests.servers import child_env

EXAMPLE_APP = Path(__file__).resolve().parents[2] / "docs" / "example_app.py"


def test_the_app_gets_the_same_commands(make_app):
    group = make_app().cli.commands["eventgate"]

    assert group.commands == cli.commands  # the same command objects, written once


def test_flask_eventgate_publish_publishes_to_the_apps_redis(make_app, redis_server, channel):
    runner = make_app().test_cli_runner()

    result = runner.invoke(args=["eventgate", "publish", channel, "--type", "order.paid",
                                 "--data", '{"n": 1}'])

    assert result.exit_code == 0, result.output
    [(stored_id, fields)] = redis_server.client().xrange(keys.log_key(channel))
    assert result.stdout.strip() == stored_id.decode()
    assert fields[b"type"] == b"order.paid" and json.loads(fields[b"data"]) == {"n": 1}


def test_flask_eventgate_token_uses_each_apps_secret(make_app):
    first, second = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    apps = [make_app(secret_keys=(first,)), make_app(secret_keys=(second,))]

    results = [app.test_cli_runner().invoke(
        args=["eventgate", "token", "orders.42", "--subject", "user-7", "--ttl", "60"]
    ) for app in apps]

    assert [r.exit_code for r in results] == [0, 0], [r.output for r in results]
    grant = ChannelTokens([first]).verify(results[0].stdout.strip())
    assert (grant.grants, grant.subject) == (("orders.42",), "user-7")
    assert ChannelTokens([second]).verify(results[1].stdout.strip()).grants == ("orders.42",)


def test_flask_eventgate_reports_a_mistake_in_one_line(make_app):
    result = make_app().test_cli_runner().invoke(args=["eventgate", "publish", "bad channel"])

    assert result.exit_code == 2
    assert result.stderr.startswith("eventgate: ") and result.stderr.count("\n") == 1
    assert "channel name" in result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_the_flask_command_runs_them_on_a_real_app(redis_server, secret_keys, publish_key,
                                                   tmp_path, channel):
    # The real `flask` command: it finds the app (docs/example_app.py, settings from the
    # environment there) and runs the group EventGate added.
    def flask(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "flask", "--app", str(EXAMPLE_APP), "eventgate", *args],
            env=child_env(EVENTGATE_SECRET_KEY=secret_keys[0], EVENTGATE_PUBLISH_KEY=publish_key,
                          EVENTGATE_REDIS_URL=redis_server.url,
                          EVENTGATE_VAR_DIR=str(tmp_path / "var"),
                          EXAMPLE_DATABASE_URL=f"sqlite:///{tmp_path / 'orders.db'}"),
            capture_output=True, text=True, timeout=30,
        )

    published = flask("publish", channel, "--data", "7")
    refused = flask("publish", "bad channel")

    assert published.returncode == 0, published.stderr
    [(stored_id, fields)] = redis_server.client().xrange(keys.log_key(channel))
    assert published.stdout.strip() == stored_id.decode() and fields[b"data"] == b"7"
    assert refused.returncode == 2 and refused.stderr.startswith("eventgate: ")
    assert refused.stderr.count("\n") == 1
