"""Every port's contract suite runs against every adapter of that port."""
from __future__ import annotations

import pytest

from chalicelib.adapters.sqlite_db import SQLiteDatabase
from chalicelib.adapters.sqlite_reports import SQLiteReportStore
from chalicelib.adapters.sqlite_store import SQLiteDelegationStore, SQLiteTokenStore
from chalicelib.adapters.sqlite_verification import SQLiteVerificationStore


def make_sqlite_stores(rebuild_threshold: int = 1000):
    """(delegations, tokens, reports, verifications) sharing one database, as the wiring builds them."""
    db = SQLiteDatabase(":memory:")
    return (SQLiteDelegationStore(db, rebuild_threshold), SQLiteTokenStore(db), SQLiteReportStore(db),
            SQLiteVerificationStore(db))


STORE_FACTORIES = {
    "sqlite": make_sqlite_stores,
    # the same store when every batch takes the full-rebuild path of bulk loads
    "sqlite-rebuild": lambda: make_sqlite_stores(rebuild_threshold=0),
}


@pytest.fixture(params=sorted(STORE_FACTORIES))
def store_factory(request):
    return STORE_FACTORIES[request.param]


@pytest.fixture
def delegation_store(store_factory):
    return store_factory()[0]


@pytest.fixture
def token_store(store_factory):
    return store_factory()[1]


@pytest.fixture
def stores(store_factory):
    """A report store and a verification store over the same data."""
    made = store_factory()
    return made[2], made[3]


@pytest.fixture
def report_store(stores):
    return stores[0]


@pytest.fixture
def verification_store(stores):
    return stores[1]
