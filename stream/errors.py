"""JSON errors for every refusal of the stream app: ``{"error": code, "message": sentence}``."""

from __future__ import annotations

import logging

from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException

from shared.errors import EventgateError, TokenExpired, TooBusy

log = logging.getLogger("eventgate.stream")


def register(app: Flask) -> None:
    @app.errorhandler(EventgateError)
    def eventgate_error(error: EventgateError):
        response = jsonify(error=error.code, message=error.message)
        response.status_code = error.status
        if error.status == 401:
            code = "token_expired" if isinstance(error, TokenExpired) else "invalid_token"
            response.headers["WWW-Authenticate"] = f'Bearer error="{code}"'
        if isinstance(error, TooBusy):
            response.headers["Retry-After"] = str(error.retry_after)
        return response

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        name = (error.name or "error").lower().replace(" ", "_")
        response = jsonify(error=name, message=error.description or error.name)
        response.status_code = error.code or 500
        return response

    @app.errorhandler(Exception)
    def unexpected(error: Exception):
        log.exception("unhandled error")
        return jsonify(error="internal_error", message="The stream server failed; retry."), 500
