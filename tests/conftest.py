"""Fixtures shared by every test folder: keys, a fixed clock, delegation factories."""
from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone

import pytest

from chalicelib.protocol.delegation import issue_delegation
from chalicelib.protocol.keys import KeyPair
from chalicelib.protocol.prefixes import parse_prefix

NOW = datetime(2026, 11, 26, 12, 0, 0, tzinfo=timezone.utc)


def _drop_netimmune_settings() -> None:
    for name in [name for name in os.environ if name.startswith("NETIMMUNE_")]:
        del os.environ[name]


def pytest_configure(config):
    """No NETIMMUNE_* setting from the shell reaches the tests or the nodes they start."""
    _drop_netimmune_settings()


@pytest.fixture(autouse=True)
def hermetic_environment():
    """Nor one a test left behind (importing the app as Lambda's packager does sets some)."""
    _drop_netimmune_settings()


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
