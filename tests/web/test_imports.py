"""Importing the web package has no side effects and pulls in neither the stream pool nor gevent."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.servers import child_env

ROOT = Path(__file__).resolve().parents[2]

_CHECK = """
import sys
import eventgate.web.app, eventgate.web.api.blueprint, eventgate.web.auth, eventgate.cli
import eventgate.web.demo, eventgate.web.errors, eventgate.web.extension, eventgate.web.health
import eventgate.tail, eventgate.report
loaded = sorted(m for m in sys.modules
                if m.split(".")[0] == "gevent" or m.startswith("eventgate.stream"))
assert not loaded, loaded
print("ok")
"""


def test_web_imports_without_settings_and_without_stream_or_gevent(tmp_path):
    # No EVENTGATE_* settings and an empty var dir: an import that read the config would fail.
    result = subprocess.run(
        [sys.executable, "-c", _CHECK], cwd=ROOT, capture_output=True, text=True, timeout=60,
        env=child_env(EVENTGATE_VAR_DIR=str(tmp_path)),
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_wsgi_app_is_built_from_the_environment(tmp_path, secret_keys, publish_key):
    check = "from eventgate.web.wsgi import app; print(app.config['MAX_CONTENT_LENGTH'])"
    result = subprocess.run(
        [sys.executable, "-c", check], cwd=ROOT, capture_output=True, text=True, timeout=60,
        env=child_env(EVENTGATE_VAR_DIR=str(tmp_path), EVENTGATE_SECRET_KEY=secret_keys[0],
                      EVENTGATE_PUBLISH_KEY=publish_key),
    )

    assert result.returncode == 0, result.stderr
    assert int(result.stdout) > 0
