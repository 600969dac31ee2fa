"""A real root → ISP → customer tree of node processes on loopback, shared by the e2e tests."""
from __future__ import annotations

import pytest

from chalicelib.cli.localnet import LocalTree


@pytest.fixture(scope="session")
def tree(tmp_path_factory):
    started = LocalTree.start(tmp_path_factory.mktemp("tree"))
    yield started
    started.stop()
