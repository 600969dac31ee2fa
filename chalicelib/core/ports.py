"""The ports core logic needs from the outside world; adapters/ makes them real (SQLite, DynamoDB, …)."""
from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from functools import cached_property
from typing import Protocol

from ..protocol.delegation import Delegation, parse_delegation
from ..protocol.prefixes import IPAddress, IPNetwork


class Role(StrEnum):
    HELD = "held"        # space this node answers for, with the chain that proves it
    GRANTED = "granted"  # space this node delegated to a child


class StaleDelegation(ValueError):
    """A delegation with a lower serial than the one already stored for the same prefix."""


@dataclass(frozen=True)
class DelegationMatch:
    """A stored delegation as the longest-prefix match found it: raw JSON, parsed only when needed.

    `parent_chain_json` is the chain of the held delegation above a granted one ("[]" on a root), so
    a referral presents the whole chain from the trust anchor down to the child.
    """

    role: Role
    document_json: str
    chain_json: str

    @cached_property
    def delegation(self) -> Delegation:
        return parse_delegation(json.loads(self.document_json))

    @property
    def chain(self) -> list[dict]:
        """The chain from the trust anchor to this delegation inclusive."""
        chain = json.loads(self.chain_json)
        return chain if self.role is Role.HELD else [*chain, json.loads(self.document_json)]


class DelegationStore(Protocol):
    def save_delegations(self, role: Role, delegations: Iterable[Delegation],
                         chains: Sequence[Sequence[dict]] | None = None) -> None:
        """Insert or replace by (role, prefix); a held delegation comes with its chain."""

    def remove_delegation(self, role: Role, prefix: IPNetwork) -> bool: ...

    def list_delegations(self, role: Role | None = None) -> list[DelegationMatch]: ...

    def longest_match(self, ip: IPAddress) -> DelegationMatch | None:
        """The most specific held or granted delegation covering ip, in one round trip."""

    def next_serial(self, prefix: IPNetwork) -> int: ...


class TokenStore(Protocol):
    def save_token(self, token_hash: str, role: str, label: str, created: datetime) -> None: ...

    def token_role(self, token_hash: str) -> str | None: ...


class Clock(Protocol):
    def now(self) -> datetime: ...
