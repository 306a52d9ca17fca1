"""Timestamps as eventgate's HTTP answers write them: ISO 8601, UTC, whole seconds, ``Z``."""

from __future__ import annotations

from datetime import UTC, datetime


def iso_utc(moment: datetime | None = None) -> str:
    """``moment`` (default: now) as ``2026-11-23T07:57:44Z``; a naive datetime is taken as UTC."""
    moment = datetime.now(UTC) if moment is None else moment
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
