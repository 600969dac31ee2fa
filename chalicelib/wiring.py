"""The one place a node is assembled from its settings: Lambda handlers, `netimmune serve` and tests."""
from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime, timezone

from .adapters.sqlite_db import SQLiteDatabase
from .adapters.notifiers import DEFAULT_RECIPIENTS, FanoutNotifier, OutboxNotifier, SmtpNotifier
from .adapters.sqlite_queue import SQLiteJobQueue
from .adapters.sqlite_reports import SQLiteReportStore
from .adapters.sqlite_store import SQLiteDelegationStore, SQLiteTokenStore
from .adapters.sqlite_verification import SQLiteVerificationStore
from .core.node import Node
from .core.policy import DEFAULT_POLICY, load_policy
from .core.tally import TallyRules
from .protocol.keys import KeyPair
from .settings import Settings


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(timezone.utc)


def build_notifier(settings: Settings, clock):
    """Alerts always land in the outbox folder; with a smarthost they are mailed as well."""
    recipients = settings.alert_to or DEFAULT_RECIPIENTS
    outbox = OutboxNotifier(settings.outbox_path, sender=settings.alert_from, recipients=recipients, clock=clock)
    if not settings.smtp_host:
        return outbox
    return FanoutNotifier(outbox, SmtpNotifier(settings.smtp_host, settings.smtp_port, settings.alert_from,
                                               recipients))


def build_node(settings: Settings, clock=None) -> Node:
    db = SQLiteDatabase(settings.db_path)
    clock = clock or SystemClock()
    return Node(settings=settings, key=KeyPair.load(settings.key_path),
                delegations=SQLiteDelegationStore(db), tokens=SQLiteTokenStore(db),
                reports=SQLiteReportStore(db), verifications=SQLiteVerificationStore(db),
                queue=SQLiteJobQueue(db, clock=clock), notifier=build_notifier(settings, clock),
                policy=load_policy(settings.policy_path) if settings.policy_path else DEFAULT_POLICY,
                clock=clock, tally=TallyRules(half_life_hours=settings.half_life_hours))


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
