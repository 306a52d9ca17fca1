"""Reloads on the deployed stack: ``supervisorctl signal HUP web`` (what ``make reload`` sends)
replaces every web worker while publishers keep posting through nginx — none of their requests
fails, and every 201 is in the log. (HUP of the stream pool: test_faults_stack.py.)"""

from __future__ import annotations

import http.client
import json
import threading

from eventgate.shared import keys
from tests.servers import wait_for
from tests.stack import process_tree


def web_workers(stack) -> set[int]:
    pid = int(stack.supervisorctl("pid", "web").stdout.strip())
    return set(process_tree(pid)) - {pid}


def test_hup_of_the_web_program_fails_no_request(make_stack, channel):
    stack = make_stack(web_workers=2, stream_workers=1)
    before = web_workers(stack)
    assert len(before) == 2
    answers: list[int] = []
    stored: list[str] = []
    stop = threading.Event()

    def publish() -> None:
        n = 0
        while not stop.is_set():
            conn = http.client.HTTPConnection("127.0.0.1", stack.port, timeout=10)
            try:
                conn.request("POST", "/api/events", json.dumps({"channel": channel, "data": n}),
                             {"Content-Type": "application/json",
                              "Authorization": f"Bearer {stack.publish_key}"})
                response = conn.getresponse()
                body = response.read()
                answers.append(response.status)
                if response.status == 201:
                    stored.append(json.loads(body)["id"])
            except OSError:
                answers.append(0)
            finally:
                conn.close()
            n += 1

    publishers = [threading.Thread(target=publish) for _ in range(3)]
    for thread in publishers:
        thread.start()
    def more_answers(count: int = 40) -> None:
        """Wait until the publishers got ``count`` more answers: requests before and after."""
        wanted = len(answers) + count
        wait_for(lambda: len(answers) >= wanted, 20, f"{count} more publish answers")

    try:
        more_answers()
        for _ in range(2):
            result = stack.supervisorctl("signal", "HUP", "web")
            assert result.returncode == 0, result.stdout + result.stderr
            wait_for(lambda old=before: not web_workers(stack) & old
                     and len(web_workers(stack)) == 2, 20, "two new web workers only")
            before = web_workers(stack)
            more_answers()
    finally:
        stop.set()
        for thread in publishers:
            thread.join(15)
    assert len(answers) > 100
    assert set(answers) == {201}, {status: answers.count(status) for status in set(answers)}
    logged = {entry_id.decode() for entry_id, _ in stack.redis().xrange(keys.log_key(channel))}
    assert set(stored) <= logged
