"""``eventgate doctor URL``: through the real stack every check passes; through nginx variants
broken on purpose (tests/cli/nginxvariants.py), in front of the same pools, each fault is caught
by its own check with a sentence that names the fix, and nothing else fails."""

from __future__ import annotations

import json

import pytest

from eventgate.cli import main
from tests.cli.nginxvariants import (
    BUFFERING_ON,
    GZIP_ON,
    LAST_EVENT_ID_DROPPED,
    NO_RETRY_FALLBACK,
    SHORT_READ_TIMEOUT,
    pool_down,
    tls,
)
from tests.fallback import FALLBACK_LINE, in_bounds
from tests.servers import free_port

ORIGIN = "https://app.example.test"

# A 2 s heartbeat (first comment 1–2 s after opening): see nginxvariants.SHORT_READ_TIMEOUT.
pytestmark = pytest.mark.stack(
    settings={"EVENTGATE_HEARTBEAT": "2", "EVENTGATE_CORS_ORIGINS": ORIGIN}
)

#: Idle long enough to see a heartbeat; short waits for the held-back event.
QUICK = ("--idle-seconds", "2.5", "--wait-seconds", "2")

EVENTS = "events arrive unbuffered"
HEARTBEATS = "heartbeats keep idle streams open"
LAST_EVENT_ID = "Last-Event-ID reaches the pool"
FALLBACK = "retry fallback when the pool is down"


def doctor(run_cli, stack, url: str, *options: str):
    """(exit status, {check: (status, detail)}, output) of ``eventgate doctor --json``."""
    done = run_cli("doctor", url, "--json", *options, EVENTGATE_PUBLISH_KEY=stack.publish_key)
    verdicts = {}
    for line in done.stdout.splitlines():
        record = json.loads(line)
        verdicts[record["check"]] = (record["status"], record["detail"])
    return done.returncode, verdicts, done.stdout + done.stderr


def failed(verdicts) -> set[str]:
    return {check for check, (status, _) in verdicts.items() if status == "FAIL"}


def test_the_stack_passes_every_check(run_cli, stack):
    status, verdicts, output = doctor(run_cli, stack, stack.url(), *QUICK, "--origin", ORIGIN)
    assert status == 0, output
    assert not failed(verdicts), output
    for check in (EVENTS, HEARTBEATS, LAST_EVENT_ID, "stream pool health", f"CORS for {ORIGIN}"):
        assert verdicts[check][0] == "ok", output
    assert verdicts["HTTP version"][0] == "warn" and "six" in verdicts["HTTP version"][1]
    assert verdicts[FALLBACK][0] == "skip" and "--pool-down" in verdicts[FALLBACK][1]
    assert stack.publish_key not in output and "token=" not in output


def test_the_text_output_is_one_verdict_a_line(run_cli, stack):
    done = run_cli("doctor", stack.url(), "--idle-seconds", "0.2",
                   EVENTGATE_PUBLISH_KEY=stack.publish_key)
    lines = done.stdout.splitlines()
    assert lines[0].startswith("warn HTTP version: HTTP/1.1"), done.stdout
    assert any(line.startswith(f"ok   {EVENTS}: ") and line.endswith("ms from publish to arrival")
               for line in lines), done.stdout
    assert "the idle check takes 0.2 s" in done.stderr


def test_a_buffering_proxy_is_caught(run_cli, stack, nginx_variant):
    url = nginx_variant("buffering", BUFFERING_ON)
    status, verdicts, output = doctor(run_cli, stack, url, *QUICK)
    assert status == 1, output
    assert failed(verdicts) == {EVENTS}, output
    assert "proxy_buffering off;" in verdicts[EVENTS][1]
    assert verdicts[LAST_EVENT_ID][0] == "skip", output


def test_a_compressing_proxy_is_caught(run_cli, stack, nginx_variant):
    url = nginx_variant("gzip", GZIP_ON)
    status, verdicts, output = doctor(run_cli, stack, url, *QUICK)
    assert status == 1, output
    assert failed(verdicts) == {EVENTS}, output
    assert "compressed (gzip)" in verdicts[EVENTS][1] and "gzip off;" in verdicts[EVENTS][1]
    assert verdicts[HEARTBEATS] == ("skip", "not checked: see the FAIL above"), output


def test_a_read_timeout_shorter_than_the_heartbeat_is_caught(run_cli, stack, nginx_variant):
    url = nginx_variant("short-read-timeout", SHORT_READ_TIMEOUT)
    status, verdicts, output = doctor(run_cli, stack, url, *QUICK)
    assert status == 1, output
    assert failed(verdicts) == {HEARTBEATS}, output
    detail = verdicts[HEARTBEATS][1]
    assert "before any heartbeat" in detail, detail
    assert "proxy_read_timeout" in detail and "EVENTGATE_HEARTBEAT" in detail, detail


def test_a_dropped_last_event_id_header_is_caught(run_cli, stack, nginx_variant):
    url = nginx_variant("last-event-id-dropped", LAST_EVENT_ID_DROPPED)
    status, verdicts, output = doctor(run_cli, stack, url, "--idle-seconds", "0.1")
    assert status == 1, output
    assert failed(verdicts) == {LAST_EVENT_ID}, output
    assert "proxy_set_header Last-Event-ID" in verdicts[LAST_EVENT_ID][1]


def test_pool_down_checks_the_retry_fallback(run_cli, stack, nginx_variant):
    url = nginx_variant("pool-down", pool_down(stack))
    status, verdicts, output = doctor(run_cli, stack, url, "--pool-down", "--origin", ORIGIN)
    assert status == 0, output
    assert verdicts[FALLBACK][0] == "ok", output
    shown = FALLBACK_LINE.search(verdicts[FALLBACK][1])  # the answer's first line, as it came
    assert shown and in_bounds(int(shown.group(1))), output
    assert verdicts[f"CORS for {ORIGIN}"][0] == "ok", output  # nginx's own answer allows it too
    assert EVENTS not in verdicts


def test_pool_down_without_the_fallback_is_caught(run_cli, stack, nginx_variant):
    url = nginx_variant("pool-down-no-fallback", pool_down(stack) + NO_RETRY_FALLBACK)
    status, verdicts, output = doctor(run_cli, stack, url, "--pool-down")
    assert status == 1, output
    assert failed(verdicts) == {FALLBACK}, output
    assert "answers 502" in verdicts[FALLBACK][1]
    assert "@stream_unavailable" in verdicts[FALLBACK][1]


def test_pool_down_while_the_pool_is_up_says_so(run_cli, stack):
    status, verdicts, output = doctor(run_cli, stack, stack.url(), "--pool-down")
    assert status == 1, output
    assert "the pool is up" in verdicts["stream pool health"][1], output


def test_the_production_edge_passes_over_http2(run_cli, stack, stack_edge, test_ca):
    status, verdicts, output = doctor(run_cli, stack, stack_edge.url(), *QUICK,
                                      "--origin", ORIGIN, "--cacert", str(test_ca.ca_certificate))
    assert status == 0, output
    assert verdicts["HTTP version"][0] == "ok" and "HTTP/2" in verdicts["HTTP version"][1]
    assert {verdicts[check][0] for check in (EVENTS, HEARTBEATS, LAST_EVENT_ID)} == {"ok"}, output
    assert verdicts[f"CORS for {ORIGIN}"][0] == "ok", output


def test_https_without_http2_is_a_warning(run_cli, stack, nginx_variant, test_ca):
    url = nginx_variant("tls-only", tls(test_ca.leaf_certificate, test_ca.leaf_key),
                        listen_options=" ssl")
    status, verdicts, output = doctor(run_cli, stack, url, "--idle-seconds", "0.1",
                                      "--cacert", str(test_ca.ca_certificate))
    assert verdicts["HTTP version"][0] == "warn", output
    assert "listen 443 ssl http2;" in verdicts["HTTP version"][1]
    assert verdicts[EVENTS][0] == "ok", output


def test_an_untrusted_certificate_is_named(run_cli, stack, stack_edge):
    status, verdicts, output = doctor(run_cli, stack, stack_edge.url())
    assert status == 1, output
    assert "not trusted" in verdicts["reach the site"][1] and "--cacert" in output
    assert verdicts[EVENTS] == ("skip", "not checked: see the FAIL above"), output


def test_a_refused_publisher_key_is_named_never_printed(run_cli, stack):
    wrong = "not-the-key-0123456789abcdef"
    done = run_cli("doctor", stack.url(), "--idle-seconds", "0.1", EVENTGATE_PUBLISH_KEY=wrong)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "FAIL get a stream token: POST /api/tokens answered 401" in done.stdout
    assert "--publish-key" in done.stdout and wrong not in done.stdout + done.stderr


def test_an_unreachable_site_fails_with_a_sentence(run_cli, stack):
    done = run_cli("doctor", f"http://127.0.0.1:{free_port()}",
                   EVENTGATE_PUBLISH_KEY=stack.publish_key)
    assert done.returncode == 1
    assert "FAIL reach the site: http://127.0.0.1:" in done.stdout and "refused" in done.stdout


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("ftp://example.test",), "http:// or https://"),
        (("example.test",), "http:// or https://"),
        (("http://127.0.0.1:99999",), "port"),
        (("http://127.0.0.1/?x=1",), "without ? or #"),
        (("http://127.0.0.1", "--origin", "app.example.test"), "--origin"),
        (("http://127.0.0.1", "--channel", "bad channel"), "--channel"),
        (("http://127.0.0.1", "--idle-seconds", "0"), "--idle-seconds"),
    ],
)
def test_bad_usage_exits_2_with_a_sentence(capsys, args, says):
    assert main(["doctor", *args, "--publish-key", "k" * 32]) == 2
    err = capsys.readouterr().err
    assert says in err and "Traceback" not in err


def test_no_publisher_key_is_a_usage_error(run_cli, tmp_path):
    done = run_cli("doctor", "http://127.0.0.1", EVENTGATE_PUBLISH_KEY=None,
                   EVENTGATE_VAR_DIR=str(tmp_path / "empty"))
    assert done.returncode == 2
    assert "no publisher key" in done.stderr
