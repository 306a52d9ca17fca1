"""The headers every HTML page of the web app carries (the demo page, the ops status page).

Pages hold no secret, but the stream URL they open holds a token: no Referer may carry it
elsewhere, and nothing but our own scripts may run or connect.
"""

from __future__ import annotations

from collections.abc import Mapping

from flask import Blueprint, Response

PAGE_HEADERS = {
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": (
        "default-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; "
        "form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
}


def protect(bp: Blueprint, extra: Mapping[str, str] | None = None) -> None:
    """Give every response of ``bp`` the page headers (and ``extra`` ones), unless the view
    set its own."""
    headers = {**PAGE_HEADERS, **(extra or {})}

    @bp.after_request
    def _page_headers(response: Response) -> Response:
        for name, value in headers.items():
            response.headers.setdefault(name, value)
        return response
