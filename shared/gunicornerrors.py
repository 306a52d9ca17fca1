"""JSON for the errors gunicorn answers by itself, before any app sees the request.

nginx passes some requests that gunicorn's stricter parser then refuses — a control character in
a header value, for one — and gunicorn would answer with its own HTML page, breaking the contract
that every error is JSON. Both pools' gunicorn configs call ``install()``, which replaces the
page writer gunicorn's workers call (``gunicorn.util.write_error``; gunicorn is pinned, <28, and
tests/security checks the answers through nginx). The answer never repeats the request, which may
hold a token.
"""

from __future__ import annotations

import json
import socket

from gunicorn import util
from gunicorn.errors import AppImportError

from eventgate.shared.config import Config
from eventgate.shared.errors import ConfigError

_CODES = {
    400: "bad_request",
    403: "forbidden",
    414: "uri_too_long",
    417: "expectation_failed",
    431: "request_header_fields_too_large",
    500: "internal_error",
}


def write_json_error(sock: socket.socket, status_int: int, reason: str, mesg: str) -> None:
    """gunicorn's ``write_error`` signature; ``mesg`` (which may quote the request) is dropped."""
    body = json.dumps({
        "error": _CODES.get(status_int, "bad_request"),
        "message": f"the server refused the request before reading it: {reason.lower()}.",
    }) + "\n"
    head = (
        f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    util.write_nonblock(sock, (head + body).encode("latin-1"))


def install() -> None:
    """Make gunicorn's own error answers JSON (call it from a gunicorn config file)."""
    util.write_error = write_json_error


def refuse_bad_config() -> Config:
    """``Config.from_env()`` for a pool's ``wsgi.py``; a configuration gunicorn must not run (a
    production start with a missing or weak secret) halts the master with one line saying why
    (gunicorn prints an AppImportError's message alone, exit status 4), not a traceback per
    worker."""
    try:
        return Config.from_env()
    except ConfigError as error:
        raise AppImportError(f"eventgate: {error}") from None
