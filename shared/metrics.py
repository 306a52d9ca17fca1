"""Prometheus plumbing both apps share: multiprocess mode under gunicorn, exposition, hooks.

Under gunicorn every worker is its own process, so a metric kept in one worker's memory shows a
different number on every scrape. prometheus-client's multiprocess mode has each process write
its values to small mmap files in ``PROMETHEUS_MULTIPROC_DIR`` (set per program by the supervisor
template, under ``var/metrics/``) and sums the files at scrape time. The variable must be set
before prometheus-client is first imported, which is why the environment, not code, sets it.

Without the variable (tests, a single process) each app keeps its metrics in its own registry.
The master's hooks clean the directory when the pool starts and forget a worker's live gauges
when it exits (``mark_process_dead``); counters of dead workers stay, so totals never go back.

Exposition is meant for loopback scrapers only: ``is_proxied`` lets the apps refuse a scrape
that came through nginx (the public server also answers 404 for /metrics itself).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    generate_latest,
    multiprocess,
)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def multiprocess_dir(environ: Mapping[str, str] | None = None) -> Path | None:
    """The multiprocess directory when multiprocess mode is on, else None."""
    value = (os.environ if environ is None else environ).get(MULTIPROC_ENV)
    return Path(value) if value else None


def app_registry() -> CollectorRegistry | None:
    """Where an app registers its metrics: None in multiprocess mode (the values live in the
    shared files and are collected from there), else a fresh registry of its own."""
    return None if multiprocess_dir() else CollectorRegistry(auto_describe=True)


def exposition(registry: CollectorRegistry | None) -> tuple[bytes, str]:
    """``(body, content type)`` of a scrape: every process's metrics in multiprocess mode,
    else those of ``registry``."""
    if multiprocess_dir() is not None:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    if registry is None:
        registry = CollectorRegistry()
    return generate_latest(registry), CONTENT_TYPE_LATEST


def is_proxied(headers: Mapping[str, str]) -> bool:
    """True when a request came through nginx (which always sets X-Forwarded-For): metrics are
    for a scraper on the app's own port, never for the public."""
    return "X-Forwarded-For" in headers


def clean_multiprocess_dir() -> None:
    """gunicorn ``on_starting`` hook body: create the directory and remove old files, so a
    restarted pool does not add up the previous run's values."""
    path = multiprocess_dir()
    if path is None:
        return
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        stale.unlink(missing_ok=True)


def forget_process(pid: int) -> None:
    """gunicorn ``child_exit`` hook body: drop the live gauges of a worker that exited."""
    if multiprocess_dir() is not None:
        multiprocess.mark_process_dead(pid)
