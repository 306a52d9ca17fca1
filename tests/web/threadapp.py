"""A WSGI app for tests/web/test_webworker.py: answers with the id of the thread that served the
request (and the request body's length), so a test can see which pool thread answered; with an
``X-Sleep`` header it holds its thread that many seconds first."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable


def app(environ: dict, start_response: Callable) -> Iterable[bytes]:
    time.sleep(float(environ.get("HTTP_X_SLEEP") or 0))  # on purpose: holds its thread
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length) if length else b""
    answer = f"{threading.get_ident()} {len(body)}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(answer)))])
    return [answer]
