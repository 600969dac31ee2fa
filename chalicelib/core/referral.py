"""Answering "who takes reports for this address?" by longest-prefix match, like a DNS referral."""
from __future__ import annotations

import json
from json.encoder import encode_basestring_ascii as quoted
from typing import NamedTuple
from enum import StrEnum

from ..protocol.prefixes import IPAddress
from .node import Node
from .ports import DelegationMatch, Role
from .targets import parse_target


class Answer(StrEnum):
    AUTHORITATIVE = "authoritative"  # this node takes reports for the address
    REFERRAL = "referral"            # a child node does; follow the endpoint
    NONE = "none"                    # outside this node's space


class Referral(NamedTuple):
    """An answer to a refer (a tuple: cheap to build on the route every referral takes)."""

    answer: Answer
    ip: str
    ttl: int
    match: DelegationMatch | None = None

    def to_json_text(self) -> str:
        """The answer as JSON text, written out with the chain spliced in as stored: the refer route's hot path.
        (`answer` and `ip` need no escaping: an enum value and an address this node printed.)"""
        head = f'{{"answer": "{self.answer.value}", "ip": "{self.ip}", "ttl": {self.ttl:d}'
        if self.match is None:
            return head + "}"
        fields = self.match.fields
        return (f'{head}, "prefix": {quoted(fields["prefix"])}, "endpoint": {quoted(fields["endpoint"].rstrip("/"))}'
                f', "holder": {quoted(fields["holder"])}, "chain": {self.match.chain_text}}}')

    def to_json(self) -> dict:
        return json.loads(self.to_json_text())


def refer(node: Node, ip_text: str) -> Referral:
    return refer_address(node, parse_target(ip_text, node.settings.dev_mode))


def refer_address(node: Node, ip: IPAddress) -> Referral:
    """A held delegation past its not_after no longer makes this node the owner: the space went back to the
    parent, which answers for it (a granted one is still referred: its holder's chain tells the client)."""
    match = node.delegations.longest_match(ip)
    if match is None or (match.role is Role.HELD and match.expired(node.clock.now())):
        return Referral(Answer.NONE, str(ip), node.settings.negative_ttl)
    answer = Answer.AUTHORITATIVE if match.role is Role.HELD else Answer.REFERRAL
    return Referral(answer, str(ip), node.settings.referral_ttl, match)
