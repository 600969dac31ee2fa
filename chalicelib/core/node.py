"""A node: its key, its settings and the ports it works through, as the wiring function assembled them."""
from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field

from ..protocol.keys import KeyPair
from ..settings import Settings
from .policy import Policy
from .ports import (Clock, DelegationStore, JobQueue, Notifier, ReportStore, Scanner, TokenStore,
                    VerificationStore, WebhookSender)
from .tally import TallyRules


@dataclass(frozen=True)
class Node:
    settings: Settings
    key: KeyPair
    delegations: DelegationStore
    tokens: TokenStore
    reports: ReportStore
    verifications: VerificationStore
    queue: JobQueue
    notifier: Notifier
    scanner: Scanner                                 # the verification probes, which alone reach other hosts
    policy: Policy
    clock: Clock
    tally: TallyRules
    webhook_sender: WebhookSender | None = None     # None where no policy names a webhook
    webhook_secrets: Mapping[str, str] = field(default_factory=dict)   # webhook name → shared secret
    # One commit for the writes several ports make for one request, where they share a database (SQLite);
    # on AWS, DynamoDB and SQS share no transaction and each write stands alone.
    unit_of_work: Callable[[], AbstractContextManager] = nullcontext

    @property
    def anchor(self) -> str:
        """The root key that every chain must start from; a root node is its own anchor."""
        return self.settings.trust_anchor or self.key.public

    @property
    def is_root(self) -> bool:
        return self.anchor == self.key.public
