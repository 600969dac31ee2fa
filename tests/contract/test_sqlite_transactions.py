"""SQLite transactions nest as savepoints: several stores' writes commit once, and a failure inside undoes
only its own writes."""
from __future__ import annotations

import sqlite3

import pytest

from chalicelib.adapters.sqlite_db import SQLiteDatabase


@pytest.fixture
def db(tmp_path):
    return SQLiteDatabase(tmp_path / "t.db", "CREATE TABLE IF NOT EXISTS t (v TEXT)")


def values(db) -> list[str]:
    return [row[0] for row in db.connection.execute("SELECT v FROM t ORDER BY v")]


def test_inner_transaction_commits_with_the_outer_one(db):
    commits = []
    db.connection.set_trace_callback(lambda sql: commits.append(sql) if sql == "COMMIT" else None)
    with db.transaction() as conn:
        conn.execute("INSERT INTO t VALUES ('outer')")
        with db.transaction() as inner:
            inner.execute("INSERT INTO t VALUES ('inner')")
    assert values(db) == ["inner", "outer"] and commits == ["COMMIT"]


def test_failure_inside_undoes_only_the_inner_writes(db):
    with db.transaction() as conn:
        conn.execute("INSERT INTO t VALUES ('outer')")
        with pytest.raises(RuntimeError), db.transaction() as inner:
            inner.execute("INSERT INTO t VALUES ('inner')")
            raise RuntimeError("inner fails")
        conn.execute("INSERT INTO t VALUES ('after')")
    assert values(db) == ["after", "outer"]


def test_failure_of_the_outer_transaction_undoes_the_inner_writes_too(db):
    with pytest.raises(RuntimeError), db.transaction():
        with db.transaction() as inner:
            inner.execute("INSERT INTO t VALUES ('inner')")
        raise RuntimeError("outer fails")
    assert values(db) == [] and not db.connection.in_transaction


def test_a_full_disk_inside_shows_its_own_error_and_fails_the_whole_transaction(db):
    """SQLITE_FULL makes SQLite roll back the whole transaction by itself: the inner caller sees that error (not a
    missing savepoint), and the outer transaction fails instead of committing nothing."""
    conn = db.connection
    conn.execute(f"PRAGMA max_page_count = {conn.execute('PRAGMA page_count').fetchone()[0] + 2}")
    with pytest.raises(sqlite3.OperationalError, match="rolled this transaction back"), db.transaction() as outer:
        outer.execute("INSERT INTO t VALUES ('outer')")
        with pytest.raises(sqlite3.OperationalError, match="full"), db.transaction() as inner:
            inner.execute("INSERT INTO t VALUES (?)", ("x" * 100_000,))
    conn.execute("PRAGMA max_page_count = 1073741823")
    assert values(db) == [] and not conn.in_transaction
    with db.transaction() as again:
        again.execute("INSERT INTO t VALUES ('after')")
    assert values(db) == ["after"]
