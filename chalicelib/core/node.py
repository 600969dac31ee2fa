"""A node: its key, its settings and the ports it works through, as the wiring function assembled them."""
from __future__ import annotations

from dataclasses import dataclass

from ..protocol.keys import KeyPair
from ..settings import Settings
from .policy import Policy
from .ports import Clock, DelegationStore, JobQueue, Notifier, ReportStore, TokenStore, VerificationStore
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
    policy: Policy
    clock: Clock
    tally: TallyRules

    @property
    def anchor(self) -> str:
        """The root key that every chain must start from; a root node is its own anchor."""
        return self.settings.trust_anchor or self.key.public

    @property
    def is_root(self) -> bool:
        return self.anchor == self.key.public
