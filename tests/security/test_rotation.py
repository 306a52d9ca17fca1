"""The key rotation and revocation procedures of docs/security.md, on the deployed stack: edit
``var/eventgate.env``, reload (``make reload`` is a HUP of both pools), check what verifies."""

from __future__ import annotations

import json
import secrets

from itsdangerous import BadSignature, URLSafeTimedSerializer

from eventgate.shared.config import ENV_FILE_NAME
from eventgate.shared.tokens import SALT, ChannelTokens
from tests.clients import request, stream_path
from tests.servers import wait_for
from tests.stack import http_get, process_tree, still_alive


def write_env(stack, secret_keys: list[str], publish_keys: list[str]) -> None:
    (stack.var_dir / ENV_FILE_NAME).write_text(
        f"EVENTGATE_SECRET_KEY={','.join(secret_keys)}\n"
        f"EVENTGATE_PUBLISH_KEY={','.join(publish_keys)}\n"
    )


def stream_pid(stack) -> int:
    return json.loads(http_get(stack.url("/streams/healthz"))[2])["pid"]


def web_workers(stack) -> dict[int, str]:
    master = int(stack.supervisorctl("pid", "web").stdout.strip())
    return {pid: started for pid, started in process_tree(master).items() if pid != master}


def reload(stack) -> None:
    """``make reload``, then wait until only new workers answer: an old stream worker keeps
    accepting for a moment after the HUP, and an old web worker answers a request that comes on
    one of nginx's kept-alive connections while it stops (gunicorn's graceful stop) — both with
    the old keys."""
    old = stream_pid(stack)
    old_web = web_workers(stack)
    result = stack.supervisorctl("signal", "HUP", "web", "stream")
    assert result.returncode == 0, result.stdout + result.stderr
    wait_for(lambda: old not in {stream_pid(stack) for _ in range(10)}, 30,
             "the old stream worker to stop answering")
    wait_for(lambda: not still_alive(old_web), 30, "the old web workers to exit")


def stream_status(stack, token: str, channel: str) -> int:
    return request(stack.port, "GET", stream_path(token, (channel,))).status


def publish_status(stack, key: str, channel: str) -> int:
    return request(stack.port, "POST", "/api/events",
                   {"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
                   json.dumps({"channel": channel}).encode()).status


def minted_token(stack, key: str, channel: str) -> str | None:
    answer = request(stack.port, "POST", "/api/tokens",
                     {"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
                     json.dumps({"channels": [channel]}).encode())
    return answer.json()["token"] if answer.status == 201 else None


def signed_by(token: str, key: str) -> bool:
    try:
        URLSafeTimedSerializer(key, salt=SALT).loads(token)
    except BadSignature:
        return False
    return True


def test_rotate_the_signing_key_and_a_publisher_key(make_secure_stack, secret_register, unique):
    stack = make_secure_stack()
    channel = f"rot.{unique}"
    old_secret, old_key = stack.secret_key, stack.publish_key
    new_secret, new_key = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    secret_register.add(new_secret, new_key)
    old_token, _ = ChannelTokens([old_secret]).issue([channel])
    secret_register.add(old_token)

    # Step 1: the new signing key first (it signs), the old one still listed (it verifies);
    # the new publisher key added next to the old one.
    write_env(stack, [new_secret, old_secret], [old_key, new_key])
    reload(stack)

    def signs_with_the_new_key() -> bool:
        token = minted_token(stack, new_key, channel)
        secret_register.add(token or "")
        return token is not None and signed_by(token, new_secret)

    wait_for(signs_with_the_new_key, 20, "new tokens signed with the new key")
    assert stream_status(stack, old_token, channel) == 200  # issued before: still valid
    assert publish_status(stack, old_key, channel) == 201  # backends not yet switched
    assert publish_status(stack, new_key, channel) == 201

    # Step 2 (once every old token has expired and every backend uses the new key): remove the
    # old signing key and revoke the old publisher key.
    write_env(stack, [new_secret], [new_key])
    reload(stack)
    wait_for(lambda: stream_status(stack, old_token, channel) == 401, 20,
             "tokens of the removed key refused")
    wait_for(lambda: publish_status(stack, old_key, channel) == 401, 20,
             "the revoked publisher key refused")
    new_token = minted_token(stack, new_key, channel)
    secret_register.add(new_token or "")
    assert new_token is not None and stream_status(stack, new_token, channel) == 200
    assert publish_status(stack, new_key, channel) == 201


def test_restrict_a_publisher_key_by_reload(make_secure_stack, secret_register, unique):
    stack = make_secure_stack()
    key = stack.publish_key
    write_env(stack, [stack.secret_key], [f"{key}:rot.{unique}.*"])
    reload(stack)
    wait_for(lambda: publish_status(stack, key, f"other.{unique}") == 403, 20,
             "the key restricted")
    assert publish_status(stack, key, f"rot.{unique}.a") == 201
