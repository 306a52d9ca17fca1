"""web/gunicorn_conf.py: the Date header formatted once per second, the same text as gunicorn's."""

from __future__ import annotations

import email.utils
import runpy
import time
from pathlib import Path

from gunicorn import util

CONF = Path(__file__).resolve().parents[2] / "web" / "gunicorn_conf.py"


def test_the_date_header_is_gunicorns_formatted_once_per_second():
    original = util.http_date
    try:
        runpy.run_path(str(CONF))
        runpy.run_path(str(CONF))  # a reload (HUP) runs it again: still one wrapper
        patched = util.http_date
        assert patched.__wrapped__ is getattr(original, "__wrapped__", original)
        for _ in range(3):
            before = int(time.time())
            text = patched()
            after = int(time.time())
            assert text in {email.utils.formatdate(t, usegmt=True) for t in (before, after)}
        assert patched(1_000_000_000.5) == email.utils.formatdate(1_000_000_000.5, usegmt=True)
    finally:
        util.http_date = original
