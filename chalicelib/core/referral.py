"""Answering "who takes reports for this address?" by longest-prefix match, like a DNS referral."""
from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from ..protocol.prefixes import IPAddress
from .node import Node
from .ports import DelegationMatch, Role
from .targets import parse_target


class Answer(StrEnum):
    AUTHORITATIVE = "authoritative"  # this node takes reports for the address
    REFERRAL = "referral"            # a child node does; follow the endpoint
    NONE = "none"                    # outside this node's space


@dataclass(frozen=True)
class Referral:
    answer: Answer
    ip: str
    ttl: int
    match: DelegationMatch | None = None

    def to_json(self) -> dict:
        body = {"answer": self.answer.value, "ip": self.ip, "ttl": self.ttl}
        if self.match is not None:
            delegation = self.match.delegation
            body.update(prefix=str(delegation.prefix), endpoint=delegation.endpoint,
                        holder=delegation.holder, chain=self.match.chain)
        return body


def refer(node: Node, ip_text: str) -> Referral:
    return refer_address(node, parse_target(ip_text, node.settings.dev_mode))


def refer_address(node: Node, ip: IPAddress) -> Referral:
    match = node.delegations.longest_match(ip)
    if match is None:
        return Referral(Answer.NONE, str(ip), node.settings.negative_ttl)
    answer = Answer.AUTHORITATIVE if match.role is Role.HELD else Answer.REFERRAL
    return Referral(answer, str(ip), node.settings.referral_ttl, match)
