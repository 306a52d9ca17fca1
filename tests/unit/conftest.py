"""Fixtures for the unit tests (the session's redis and configs are in tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def var_dir(tmp_path) -> Path:
    """A var dir that does not exist yet, private to the test."""
    return tmp_path / "var"
