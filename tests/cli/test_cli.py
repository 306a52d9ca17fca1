"""The eventgate command, run as a real process (``run_cli``) against the session's redis, and
its stream follower (eventgate/tail.py) against a scripted SSE server."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from eventgate.cli import main
from eventgate.shared import keys
from eventgate.shared.tokens import ChannelTokens
from eventgate.tail import Tail
from tests.servers import LOOPBACK, free_port


def assert_one_line_error(result: subprocess.CompletedProcess, code: int, text: str) -> None:
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("eventgate: ")
    assert text in result.stderr
    assert result.stderr.count("\n") == 1


def test_init_writes_a_private_env_file_once(run_cli, tmp_path):
    first = run_cli("init", EVENTGATE_SECRET_KEY=None, EVENTGATE_PUBLISH_KEY=None)

    assert first.returncode == 0, first.stderr
    path = Path(first.stdout.strip())
    assert path == tmp_path / "var" / "eventgate.env"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    content = path.read_text()
    assert "EVENTGATE_SECRET_KEY=" in content and "EVENTGATE_PUBLISH_KEY=" in content

    again = run_cli("init", EVENTGATE_SECRET_KEY=None, EVENTGATE_PUBLISH_KEY=None)
    assert again.returncode == 0
    assert again.stdout == first.stdout
    assert path.read_text() == content


def test_init_takes_a_var_dir(run_cli, tmp_path):
    result = run_cli("init", "--var-dir", str(tmp_path / "elsewhere"))

    assert result.returncode == 0
    assert Path(result.stdout.strip()) == tmp_path / "elsewhere" / "eventgate.env"


def test_commands_read_the_secrets_init_wrote(run_cli, tmp_path):
    run_cli("init", EVENTGATE_SECRET_KEY=None, EVENTGATE_PUBLISH_KEY=None)
    env_file = (tmp_path / "var" / "eventgate.env").read_text()
    secret = next(line.split("=", 1)[1] for line in env_file.splitlines()
                  if line.startswith("EVENTGATE_SECRET_KEY="))

    result = run_cli("token", "a", EVENTGATE_SECRET_KEY=None, EVENTGATE_PUBLISH_KEY=None)

    assert result.returncode == 0, result.stderr
    assert ChannelTokens([secret]).verify(result.stdout.strip()).grants == ("a",)


def test_publish_prints_the_id_of_the_stored_event(run_cli, redis_server, channel):
    result = run_cli("publish", channel, "--type", "order.updated", "--data", '{"n": [1, 2]}')

    assert result.returncode == 0, result.stderr
    event_id = result.stdout.strip()
    [(stored_id, fields)] = redis_server.client().xrange(keys.log_key(channel))
    assert stored_id.decode() == event_id
    assert fields[b"type"] == b"order.updated"
    assert json.loads(fields[b"data"]) == {"n": [1, 2]}


def test_publish_without_data_publishes_null(run_cli, redis_server, channel):
    result = run_cli("publish", channel)

    assert result.returncode == 0, result.stderr
    [(_, fields)] = redis_server.client().xrange(keys.log_key(channel))
    assert (fields[b"type"], fields[b"data"]) == (b"message", b"null")


@pytest.mark.parametrize(
    ("args", "text"),
    [
        (("publish", "ok.channel", "--data", "{not json"), "--data must be valid JSON"),
        (("publish", "bad channel"), "channel name"),
        (("publish", "ok.channel", "--type", "eventgate.lost"), "reserved"),
        (("token", "bad channel"), "channel name"),
        (("token", "a", "--ttl", "0"), "ttl"),
        (("tail", "users.*"), "channel name"),
        (("tail", "a", "--url", "ftp://example.com"), "--url"),
    ],
)
def test_bad_input_exits_2_with_one_line(run_cli, args, text):
    assert_one_line_error(run_cli(*args), 2, text)


def test_missing_secrets_exit_2_and_say_how_to_fix_it(run_cli):
    result = run_cli("publish", "a", EVENTGATE_SECRET_KEY=None, EVENTGATE_PUBLISH_KEY=None)

    assert_one_line_error(result, 2, "eventgate init")


def test_publish_with_redis_down_exits_1_fast(run_cli):
    started = time.monotonic()
    result = run_cli("publish", "a", EVENTGATE_REDIS_URL=f"redis://{LOOPBACK}:{free_port()}/0")

    assert time.monotonic() - started < 10
    assert_one_line_error(result, 1, "nothing was published")


def test_token_verifies_with_its_channels_ttl_and_subject(run_cli, secret_keys):
    result = run_cli("token", "orders.42", "users.7.*", "--ttl", "90", "--subject", "user-7")

    assert result.returncode == 0, result.stderr
    grant = ChannelTokens(secret_keys).verify(result.stdout.strip())
    assert grant.grants == ("orders.42", "users.7.*")
    assert grant.subject == "user-7"
    assert abs(grant.expires_at - (time.time() + 90)) < 5


def test_tail_against_a_closed_port_exits_1_with_a_clear_message(run_cli):
    port = free_port()

    result = run_cli("tail", "a", "--url", f"http://{LOOPBACK}:{port}")

    assert_one_line_error(result, 1, f"cannot connect to http://{LOOPBACK}:{port}")


def test_no_command_prints_usage_and_exits_2(run_cli):
    result = run_cli()

    assert result.returncode == 2
    assert "Usage: eventgate" in result.stderr


def test_an_interrupt_exits_130_quietly(monkeypatch, capsys, tmp_path):
    def interrupted(var_dir):
        raise KeyboardInterrupt

    monkeypatch.setattr("eventgate.cli.write_dev_env", interrupted)

    assert main(["init", "--var-dir", str(tmp_path)]) == 130
    assert "Traceback" not in capsys.readouterr().err


def test_python_m_eventgate_is_the_command():
    result = subprocess.run([sys.executable, "-m", "eventgate", "--help"], capture_output=True,
                            text=True, timeout=30)

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Usage: eventgate [OPTIONS] COMMAND")
    assert all(name in result.stdout for name in
               ("init", "publish", "token", "tail", "status", "replay"))


# -- tail against a scripted SSE server -----------------------------------------------------------


class ScriptedStreams:
    """An HTTP server whose n-th ``/streams`` request gets the n-th scripted body, then EOF."""

    def __init__(self, bodies: list[tuple[int, bytes | list[bytes]]]) -> None:
        self.bodies = list(bodies)
        self.requests: list[tuple[str, dict[str, str]]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the http.server API
                owner.requests.append((self.path, dict(self.headers)))
                status, body = owner.bodies.pop(0) if owner.bodies else (503, b"")
                self.send_response(status)
                kind = "text/event-stream" if status == 200 else "application/json"
                self.send_header("Content-Type", kind)
                self.send_header("Connection", "close")
                self.end_headers()
                # Split mid-frame, like a real network (a list: those pieces).
                for piece in body if isinstance(body, list) else (body[:7], body[7:]):
                    self.wfile.write(piece)
                    self.wfile.flush()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer((LOOPBACK, 0), Handler)
        self.url = f"http://{LOOPBACK}:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> ScriptedStreams:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


class Lines:
    """A stdout stand-in that stops the tail once it has ``wanted`` lines."""

    class Enough(Exception):
        pass

    def __init__(self, wanted: int) -> None:
        self.wanted = wanted
        self.lines: list[str] = []

    def write(self, text: str) -> None:
        self.lines.extend(text.splitlines())
        if len(self.lines) >= self.wanted:
            raise self.Enough

    def flush(self) -> None:
        pass


def _follow(url: str, channels: list[str], wanted: int, **options) -> list[str]:
    out = Lines(wanted)
    tail = Tail(url, channels, mint_token=lambda: "tok", **options)
    with pytest.raises(Lines.Enough):
        tail.run(out)
    return out.lines


def test_tail_prints_events_and_resumes_from_the_last_id_after_the_stream_ends():
    first = (b"retry: 1000\n\n: hello\n\nid: 1-0\nevent: t\ndata: {\"a\":1}\n\n"
             b"id: 2-0\nevent: eventgate.token_expired\ndata: {}\n\n")
    second = b"id: 3-0\nevent: u\ndata: \"x\"\n\n"
    with ScriptedStreams([(200, first), (200, second)]) as server:
        lines = _follow(server.url, ["orders.1"], 2, last_event_id="0-1")

    assert lines == ['orders.1 t {"a":1}', 'orders.1 u "x"']
    (path1, headers1), (path2, headers2) = server.requests
    assert path1 == "/streams?token=tok&channel=orders.1"
    assert headers1["Last-Event-ID"] == "0-1"
    assert headers2["Last-Event-ID"] == "2-0"  # resumes after the control event's cursor too


def test_tail_keeps_the_opening_cursor_of_a_stream_cut_before_its_first_event():
    # The server's opening frame (an id: with no data) is split over chunks here on purpose.
    first = [b"retry: 1000\n\nid: a=7-0,", b"b=0-0\n", b"\n"]
    second = b"id: a=8-0,b=0-0\nevent: t\ndata: 1\n\n"
    with ScriptedStreams([(200, first), (200, second)]) as server:
        lines = _follow(server.url, ["a", "b"], 1)

    assert lines == ["a t 1"]
    (_, headers1), (_, headers2) = server.requests
    assert "Last-Event-ID" not in headers1
    assert headers2["Last-Event-ID"] == "a=7-0,b=0-0"


def test_tail_json_names_the_channel_from_a_multi_channel_cursor():
    body = b"id: b=5-0,a=4-0\nevent: t\ndata: {\"k\":[1]}\n\n"
    with ScriptedStreams([(200, body)]) as server:
        [line] = _follow(server.url, ["a", "b"], 1, as_json=True)

    assert json.loads(line) == {"channel": "b", "id": "5-0", "type": "t", "data": {"k": [1]}}
    assert server.requests[0][0] == "/streams?token=tok&channel=a&channel=b"


def test_tail_reports_a_refused_stream(run_cli):
    refusal = b'{"error": "channel_forbidden", "message": "the token does not grant it."}'
    with ScriptedStreams([(403, refusal)]) as server:
        result = run_cli("tail", "a", "--url", server.url)

    assert_one_line_error(result, 1, "refused (403): the token does not grant it.")
