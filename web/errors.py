"""JSON errors for every refusal: ``{"error": code, "message": human sentence}``.

Threat: an error body goes to whoever sent the request. It carries a code and a sentence written
for that caller — never a traceback, a key, a token or a Redis URL. What went wrong inside the
server is logged here, where operators look, and answered with a generic 500.
"""

from __future__ import annotations

from collections.abc import Mapping

from flask import Flask, Response, current_app, jsonify, request
from werkzeug.exceptions import HTTPException, InternalServerError

from eventgate.shared.errors import EventgateError, PublishError

#: Seconds a client should wait before retrying after Redis failed to store an event.
RETRY_AFTER_SECONDS = 1

# Werkzeug's own descriptions are written for HTML pages; these read better in an API.
_HTTP_MESSAGES = {
    404: "there is nothing at this URL.",
    405: "this URL does not accept the {method} method.",
}


def error_response(
    code: str, message: str, status: int, headers: Mapping[str, str] | None = None
) -> Response:
    """The JSON error response every refusal uses."""
    response = jsonify(error=code, message=message)
    response.status_code = status
    if headers:
        response.headers.update(headers)
    return response


def publish_failed_response(error: PublishError) -> Response:
    """503 for an event Redis did not store: the caller may retry, and nothing was published."""
    return error_response(
        error.code, error.message, 503, {"Retry-After": str(RETRY_AFTER_SECONDS)}
    )


def register_error_handlers(app: Flask) -> None:
    """Answer every error of ``app`` with JSON: eventgate's own errors, HTTP errors, and crashes."""
    app.register_error_handler(EventgateError, eventgate_error_response)
    app.register_error_handler(HTTPException, _http_error)
    # Flask logs the traceback of an unhandled exception, then calls the 500 handler.
    app.register_error_handler(InternalServerError, _internal_error)


def eventgate_error_response(error: EventgateError) -> Response:
    """The answer to one of eventgate's own errors (in an app context): its code and sentence
    with its status, a 503 with ``Retry-After`` for a publish Redis did not confirm (logged),
    a generic 500 (the details logged) for a failure of the server's own."""
    if isinstance(error, PublishError):
        current_app.logger.warning("publish failed: %s", error.message)
        return publish_failed_response(error)
    status = getattr(error, "status", 500)
    if status >= 500:
        current_app.logger.error("request failed: %s: %s", type(error).__name__, error.message)
        return _generic_500()
    return error_response(error.code, error.message, status)


def _http_error(error: HTTPException) -> Response | HTTPException:
    if error.code is None:  # not an error (e.g. a routing redirect): let werkzeug answer it
        return error
    if error.code >= 500:
        return _internal_error(error)
    code = (error.name or "error").lower().replace(" ", "_").replace("'", "")
    if error.code == 413:
        limit = current_app.config.get("MAX_CONTENT_LENGTH")
        message = f"the request body is larger than the {limit} bytes this server accepts."
        code = "content_too_large"
    elif error.code in _HTTP_MESSAGES:
        message = _HTTP_MESSAGES[error.code].format(method=request.method)
    else:
        message = _sentence(error.description or error.name)
    # Keep the headers that mean something (Allow on 405, WWW-Authenticate on 401), drop the
    # HTML Content-Type werkzeug would send.
    headers = {k: v for k, v in error.get_headers() if k.lower() != "content-type"}
    return error_response(code, message, error.code, headers)


def _internal_error(error: HTTPException) -> Response:
    return _generic_500()


def _generic_500() -> Response:
    return error_response(
        "internal_error", "the server failed to handle this request; it has been logged.", 500
    )


def _sentence(text: str) -> str:
    text = text.strip()
    return text[:1].lower() + text[1:] if text else "the request was refused."
