"""Endorsing a reporter key: a node holding space lends its rank (noc, trusted) to a reporter (DESIGN.md §1, §2).

The credentials are the node's chain from the trust anchor followed by the endorsement its key signs. A node
weighing a report checks both, so the endorsement is made to end no later than the chain does. Nothing revokes
an endorsement before its not_after: keep them short and renew them, as grants are.
"""
from __future__ import annotations

from datetime import timedelta

from ..protocol.delegation import validate_chain
from ..protocol.endorsement import issue_endorsement
from ..protocol.keys import InvalidKey, parse_public_key
from .errors import BadRequest, Forbidden
from .node import Node
from .ports import Role


def endorse(node: Node, reporter: str, org: str, rank: str, days: int) -> list[dict]:
    """The credentials for reporter: the held chain that lasts longest, then the endorsement (which refuses a rank
    other than noc or trusted)."""
    try:
        parse_public_key(reporter)
    except InvalidKey as exc:
        raise BadRequest(f"reporter key: {exc}") from None
    if not org.strip():
        raise BadRequest("name the organisation the reporter speaks for: the endorsement vouches for it")
    now = node.clock.now()
    usable, problems = [], []
    for match in node.delegations.list_delegations(Role.HELD):
        verdict = validate_chain(match.chain, node.anchor, now)
        if not verdict.ok:
            problems.append(f"{match.delegation.prefix}: {verdict.explain()}")
        elif verdict.leaf.holder != node.key.public:
            problems.append(f"{match.delegation.prefix} is held by {verdict.leaf.holder}, not by this node's key")
        else:
            usable.append((min(link.not_after for link in verdict.delegations), match.chain))
    if not usable:
        unanchored = " (no trust anchor is set, so this node takes itself for the root: set --anchor)" \
            if node.is_root and problems else ""
        raise Forbidden("only a node holding space may endorse, with a chain valid now from its trust anchor "
                        f"{node.anchor}{unanchored}: "
                        + ("; ".join(problems) or "this node holds none; install a delegation"), code="not_held")
    chain_ends, chain = max(usable, key=lambda pair: pair[0])
    return [*chain, issue_endorsement(node.key, reporter, org, rank, min(now + timedelta(days=days), chain_ends))]
