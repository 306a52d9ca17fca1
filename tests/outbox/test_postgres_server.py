"""The tests' PostgreSQL is a real server, and what the outbox relies on works on it: commit-only
NOTIFY wake-ups, SKIP LOCKED claims that never overlap, transaction-scoped advisory locks that
make a second relay wait."""

from __future__ import annotations

import threading

import sqlalchemy as sa

from tests.postgres import connect
from tests.servers import wait_for


def test_a_test_gets_a_fresh_empty_database_over_sqlalchemy(postgres_url):
    engine = sa.create_engine(postgres_url)
    try:
        with engine.connect() as conn:
            name, version = conn.execute(sa.text("SELECT current_database(), version()")).one()
            tables = sa.inspect(conn).get_table_names()
    finally:
        engine.dispose()
    assert name == sa.make_url(postgres_url).database
    assert version.startswith("PostgreSQL ")
    assert tables == []


def test_notify_reaches_a_listener_only_when_its_transaction_commits(postgres_url):
    with connect(postgres_url, autocommit=True) as listener, connect(postgres_url) as sender:
        listener.execute("LISTEN x")
        sender.execute("SELECT pg_notify('x', 'rolled back')")
        sender.rollback()
        sender.execute("SELECT pg_notify('x', '')")
        sender.commit()
        # Notifications arrive in commit order: had the rolled-back one been sent, it would be
        # the first.
        received = [n.payload for n in listener.notifies(timeout=5, stop_after=1)]
    assert received == [""]


def test_skip_locked_claims_on_two_connections_are_disjoint(postgres_url):
    engine = sa.create_engine(postgres_url)
    claim = sa.text("SELECT id FROM jobs ORDER BY id LIMIT 4 FOR UPDATE SKIP LOCKED")
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE jobs (id serial PRIMARY KEY)"))
            conn.execute(sa.text("INSERT INTO jobs SELECT FROM generate_series(1, 10)"))
        with engine.connect() as first, engine.connect() as second:
            mine = first.execute(claim).scalars().all()
            theirs = second.execute(claim).scalars().all()
    finally:
        engine.dispose()
    assert len(mine) == len(theirs) == 4
    assert set(mine).isdisjoint(theirs)


def test_an_advisory_xact_lock_blocks_a_second_transaction_until_the_first_commits(
    postgres_url,
):
    lock = "SELECT pg_advisory_xact_lock(15)"
    with connect(postgres_url) as first, connect(postgres_url) as second, \
            connect(postgres_url, autocommit=True) as watcher:
        first.execute(lock)
        second.execute("SET lock_timeout = '20s'")  # a broken lock fails the test, never hangs
        acquired = threading.Event()
        errors: list[BaseException] = []

        def take() -> None:
            try:
                second.execute(lock)
                acquired.set()
            except BaseException as error:  # reported by the test, not lost in the thread
                errors.append(error)

        taker = threading.Thread(target=take, daemon=True)
        taker.start()
        waiting = ("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                   " AND database = (SELECT oid FROM pg_database"
                   " WHERE datname = current_database())")
        wait_for(lambda: watcher.execute(waiting).fetchone()[0] == 1, 10,
                 "the second transaction to wait for the advisory lock")
        assert not acquired.is_set()
        first.commit()
        taker.join(10)
        assert errors == []
        assert acquired.is_set()
        second.commit()
