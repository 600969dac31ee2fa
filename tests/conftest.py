"""Fixtures shared by every test folder: keys, a fixed clock, delegation factories."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from chalicelib.protocol.delegation import issue_delegation
from chalicelib.protocol.keys import KeyPair
from chalicelib.protocol.prefixes import parse_prefix

NOW = datetime(2026, 11, 26, 12, 0, 0, tzinfo=timezone.utc)


@pytest.fixture
def now() -> datetime:
    return NOW


class FixedClock:
    """A clock tests move by hand."""

    def __init__(self, now: datetime = NOW):
        self.moment = now

    def now(self) -> datetime:
        return self.moment


def delegate(issuer: KeyPair, prefix: str, holder: KeyPair | str, endpoint: str = "http://127.0.0.1:9",
             serial: int = 1, not_before: datetime = NOW - timedelta(days=1),
             not_after: datetime = NOW + timedelta(days=365)):
    """A signed delegation with sensible defaults, for tests that care about one field at a time."""
    holder_key = holder if isinstance(holder, str) else holder.public
    return issue_delegation(issuer, parse_prefix(prefix), holder_key, endpoint, serial, not_before, not_after)


@pytest.fixture(scope="session")
def root_key() -> KeyPair:
    return KeyPair.generate()


@pytest.fixture(scope="session")
def isp_key() -> KeyPair:
    return KeyPair.generate()


@pytest.fixture(scope="session")
def customer_key() -> KeyPair:
    return KeyPair.generate()
