"""WSGI middleware for views that take the client socket over.

When a view wrote its own response on the socket it sets ``environ[HANDLED]``; the middleware
then returns gunicorn's ``ALREADY_HANDLED`` marker so gunicorn writes nothing more (no second
header block, no 500 page). The marker is internal to gunicorn: the version is pinned in
pyproject.toml and tests/stream covers the behaviour.
"""

from __future__ import annotations

from gunicorn.workers.base_async import ALREADY_HANDLED

from eventgate.stream.views import HANDLED


class Handover:
    def __init__(self, app) -> None:  # noqa: ANN001 - any WSGI app
        self.app = app

    def __call__(self, environ, start_response):  # noqa: ANN001, ANN204 - WSGI
        started: list[tuple] = []

        def defer(status, headers, exc_info=None):  # noqa: ANN001, ANN202
            started.append((status, headers, exc_info))
            return lambda data: None

        body = self.app(environ, defer)
        if environ.get(HANDLED):
            if hasattr(body, "close"):
                body.close()
            return ALREADY_HANDLED
        start_response(*started[0])
        return body
