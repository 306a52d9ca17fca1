"""Fixtures for the outbox tests: the example app under gunicorn; the database a fault test runs
on (SQLite in a file, or a fresh PostgreSQL database) and the shop app (tests/outbox/shop.py)
over it."""

from __future__ import annotations

import pytest

from tests.outbox.exampleapp import ExampleApp
from tests.outbox.shop import Shop, make_shop
from tests.servers import LOOPBACK, child_env, free_port
from tests.stack import REPO_ROOT
from tests.stream.pool import StreamPool, pool_settings


@pytest.fixture(scope="module")
def example_app(redis_server, secret_keys, publish_key, tmp_path_factory):
    """docs/example_app.py under gunicorn (its tables created, SQLite) on the session's Redis,
    with a stream pool of its own that its pages may open streams on (CORS), for one test
    module (~4 s to start both): tests tell their orders apart by id."""
    workdir = tmp_path_factory.mktemp("example")
    port = free_port()
    pool = StreamPool(workdir, pool_settings(
        redis_server.url, secret_keys, publish_key, workdir / "var",
        cors_origins=f"http://{LOOPBACK}:{port}"))
    env = child_env(
        EVENTGATE_SECRET_KEY=",".join(secret_keys), EVENTGATE_PUBLISH_KEY=publish_key,
        EVENTGATE_REDIS_URL=redis_server.url, EVENTGATE_VAR_DIR=str(workdir / "var"),
        # the repository's packages, as an installed eventgate would provide them
        PYTHONPATH=str(REPO_ROOT),
    )
    try:
        pool.start()
        app = ExampleApp.start(port, f"http://{LOOPBACK}:{pool.port}/streams", workdir, env,
                               redis_server.client())
        yield app
        app.stop()
    finally:
        pool.stop()


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
