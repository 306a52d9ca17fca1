"""Every error of the web app is JSON ``{"error", "message"}``; crashes are logged, not shown."""

from __future__ import annotations

import logging

import pytest
from werkzeug.exceptions import Conflict


def test_unknown_url_is_404_json(client):
    response = client.get("/no/such/page")

    assert response.status_code == 404
    assert response.get_json() == {"error": "not_found", "message": "there is nothing at this URL."}


@pytest.mark.parametrize(("method", "path"), [("get", "/api/events"), ("delete", "/api/tokens"),
                                              ("post", "/healthz"), ("put", "/demo/messages")])
def test_wrong_method_is_405_json_with_allow(client, method, path):
    response = getattr(client, method)(path)

    assert response.status_code == 405
    assert response.get_json()["error"] == "method_not_allowed"
    assert method.upper() in response.get_json()["message"]
    assert "POST" in response.headers["Allow"] or "GET" in response.headers["Allow"]


def test_a_crash_is_a_generic_500_and_the_traceback_is_logged(app, caplog):
    @app.get("/crash")
    def crash():
        raise RuntimeError("secret-detail-from-inside")

    with caplog.at_level(logging.ERROR):
        response = app.test_client().get("/crash")

    assert response.status_code == 500
    body = response.get_json()
    assert body["error"] == "internal_error"
    assert "secret-detail-from-inside" not in response.get_data(as_text=True)
    assert "Traceback" not in response.get_data(as_text=True)
    assert "secret-detail-from-inside" in caplog.text


def test_an_http_error_raised_by_a_view_keeps_its_status(app):
    @app.get("/conflict")
    def conflict():
        raise Conflict("that order was already paid.")

    response = app.test_client().get("/conflict")

    assert response.status_code == 409
    assert response.get_json() == {"error": "conflict", "message": "that order was already paid."}
