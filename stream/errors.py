"""JSON errors for every refusal of the stream app: ``{"error": code, "message": sentence}``."""

from __future__ import annotations

import logging

from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException

from eventgate.shared.errors import EventgateError
from eventgate.stream.opening import StreamFailed, refusal_headers

log = logging.getLogger("eventgate.stream")


def register(app: Flask) -> None:
    @app.errorhandler(EventgateError)
    def eventgate_error(error: EventgateError):
        response = jsonify(error=error.code, message=error.message)
        response.status_code = error.status
        response.headers.update(refusal_headers(error))
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
        failed = StreamFailed()
        return jsonify(error=failed.code, message=failed.message), failed.status
