"""Fixtures of the outbox's fault tests: the database each runs on (SQLite in a file, or a fresh
PostgreSQL database), and the shop app (tests/outbox/shop.py) over it."""

from __future__ import annotations

import pytest

from tests.outbox.shop import Shop, make_shop


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path) -> str:
    """A fresh, empty database: SQLite in a file with default settings, or PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'shop.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def make_shop_app(database_url):
    """Factory: ``make_shop_app(config, gated=True)`` → the shop (tests/outbox/shop.py) over this
    test's database; closed (relay thread stopped, connections dropped) after the test."""
    shops: list[Shop] = []

    def make(config, *, gated: bool = True) -> Shop:
        shop = make_shop(database_url, config, gated=gated)
        shops.append(shop)
        return shop

    yield make
    for shop in shops:
        shop.close()
