"""The one place a node is assembled from its settings: Lambda handlers, `netimmune serve` and tests."""
from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime, timezone

from .adapters.sqlite_db import SQLiteDatabase
from .adapters.sqlite_reports import SQLiteReportStore
from .adapters.sqlite_store import SQLiteDelegationStore, SQLiteTokenStore
from .core.node import Node
from .core.tally import TallyRules
from .protocol.keys import KeyPair
from .settings import Settings


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(timezone.utc)


def build_node(settings: Settings, clock=None) -> Node:
    db = SQLiteDatabase(settings.db_path)
    return Node(settings=settings, key=KeyPair.load(settings.key_path),
                delegations=SQLiteDelegationStore(db), tokens=SQLiteTokenStore(db),
                reports=SQLiteReportStore(db), clock=clock or SystemClock(),
                tally=TallyRules(half_life_hours=settings.half_life_hours))


class NodeHolder:
    """Builds the node on first use (a Lambda cold start) unless one was handed in (serve, tests)."""

    def __init__(self, factory: Callable[[], Node]):
        self._factory = factory
        self._node: Node | None = None
        self._lock = threading.Lock()

    def get(self) -> Node:
        if self._node is None:
            with self._lock:
                if self._node is None:
                    self._node = self._factory()
        return self._node

    def set(self, node: Node) -> None:
        self._node = node
