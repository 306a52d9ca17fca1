"""Fixtures for the stream tier (the pool itself, ``make_pool``, is in tests/conftest.py)."""

from __future__ import annotations

import pytest

from tests.stream.pool import StreamPool


@pytest.fixture
def cors_origin() -> str:
    """The one origin ``cors_pool`` allows cross-origin streams from."""
    return "http://app.example"


@pytest.fixture
def cors_pool(make_pool, cors_origin) -> StreamPool:
    """A pool with CORS for ``cors_origin`` and at most two channels per stream."""
    return make_pool(cors_origins=cors_origin, max_channels="2")
