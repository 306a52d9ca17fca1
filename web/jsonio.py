"""Strict JSON request bodies, shared by the publisher API and the demo.

A body must say it is JSON (``Content-Type: application/json``), parse, and have exactly the
fields the endpoint knows: an unknown field is refused rather than ignored, so a typo such as
``"dat"`` fails loudly instead of publishing ``null``. Requiring the JSON content type also keeps
other sites' plain HTML forms from posting here (they cannot send it without a CORS preflight).
"""

from __future__ import annotations

import json
from collections.abc import Collection

from flask import request

from eventgate.shared.errors import InvalidJSON, InvalidRequest


def read_json() -> object:
    """The parsed body of the current request. Raises InvalidRequest (wrong content type),
    InvalidJSON (unparseable), or werkzeug's 413 when the body exceeds ``MAX_CONTENT_LENGTH``."""
    if not request.is_json:
        raise InvalidRequest("send the body as JSON with `Content-Type: application/json`.")
    body = request.get_data(cache=False)
    if not body.strip():
        raise InvalidJSON("the request body is empty: send a JSON document.")
    try:
        return json.loads(body)
    except RecursionError:
        raise InvalidJSON("the request body is nested too deeply.") from None
    except ValueError as error:  # JSONDecodeError and UnicodeDecodeError
        raise InvalidJSON(f"the request body is not valid JSON ({_reason(error)}).") from None


def read_fields(
    value: object, what: str, required: Collection[str], optional: Collection[str] = ()
) -> dict:
    """``value`` as a dict holding every ``required`` field and nothing but ``required`` and
    ``optional`` ones; ``what`` names it in the error ("the body", "event 3")."""
    if not isinstance(value, dict):
        raise InvalidRequest(f"{what} must be a JSON object, not {_kind(value)}.")
    unknown = [key for key in value if key not in required and key not in optional]
    if unknown:
        shown = ", ".join(repr(key[:40]) for key in unknown[:5])
        raise InvalidRequest(f"{what} has unknown field(s) {shown}.")
    missing = [key for key in required if key not in value]
    if missing:
        raise InvalidRequest(f"{what} is missing the field(s) {', '.join(map(repr, missing))}.")
    return value


def _kind(value: object) -> str:
    if value is None:
        return "null"
    return {
        list: "an array", str: "a string", bool: "a boolean", int: "a number", float: "a number"
    }.get(type(value), type(value).__name__)


def _reason(error: ValueError) -> str:
    if isinstance(error, json.JSONDecodeError):
        return f"{error.msg} at line {error.lineno} column {error.colno}"
    return "it is not UTF-8 text"
