"""Granting space to children, installing what a parent granted us, revoking and listing.

Revoking stops this node from referring the space; the signed document itself stays valid until its
not_after, which is why grants are short-lived and renewed (as RPKI certificates are). Granting the same
prefix to the same holder again renews it: a new serial, and the endpoint and validity given this time.
"""
from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from ..protocol.delegation import (ChainError, Delegation, MalformedDelegation, endpoint_refusal, issue_delegation,
                                   plain_endpoint, validate_chain)
from ..protocol.keys import InvalidKey, parse_public_key
from ..protocol.prefixes import IPNetwork, contains
from .errors import BadRequest, Conflict, Forbidden, NotFound, Unprocessable
from .node import Node
from .ports import DelegationMatch, Role, StaleDelegation
from .targets import parse_space


def grant(node: Node, prefix_text: str, holder: str, endpoint: str, days: int | None = None) -> list[dict]:
    """Sign and record a delegation; return the whole chain from the anchor to it, for the holder."""
    prefix = parse_space(prefix_text, node.settings.dev_mode)
    try:
        parse_public_key(holder)
        endpoint = plain_endpoint(endpoint)
    except (InvalidKey, MalformedDelegation) as exc:
        raise BadRequest(str(exc)) from None
    if holder == node.key.public:
        raise BadRequest("a node cannot delegate to itself")
    if days is not None and (not isinstance(days, int) or isinstance(days, bool) or not 0 < days <= 3660):
        raise BadRequest("days must be a whole number from 1 to 3660")
    _refuse_unreachable(node, endpoint)
    now = node.clock.now()
    not_after = now + timedelta(days=days or node.settings.grant_days)
    parent_chain: list[dict] = []
    if node.is_root:
        refuse_unanchored(node)
    else:
        parent = _held_parent(node, prefix)
        not_after = min(not_after, parent.delegation.not_after)
        parent_chain = parent.chain
    with node.delegations.granting():  # no other grant, in any process, between the check and the save
        _refuse_granted_elsewhere(node, prefix, holder)
        delegation = issue_delegation(node.key, prefix, holder, endpoint, node.delegations.next_serial(prefix),
                                      now, not_after)
        node.delegations.save_delegations(Role.GRANTED, [delegation])
    return [*parent_chain, delegation.document]


def _refuse_unreachable(node: Node, endpoint: str) -> None:
    """A delegation whose endpoint every reporter refuses hands the child's space to nobody. A dev-mode node
    serves a test tree, whose reporters run in dev mode too, so it grants plain http and loopback."""
    parts = urlsplit(endpoint)
    why = endpoint_refusal(parts.scheme, parts.hostname, node.settings.dev_mode)
    if why:
        raise Unprocessable(f"reporters refuse the endpoint {endpoint}: {why}; only a dev-mode node (--dev, "
                            "NETIMMUNE_DEV_MODE=1) grants one, for test trees", code="unsafe_endpoint")


def _refuse_granted_elsewhere(node: Node, prefix: IPNetwork, holder: str) -> None:
    """Each address is granted to one holder at most. Another holder's chain over the same addresses would
    validate just as well, so reporters would follow whichever referral they met first; the space must be
    revoked before it changes hands. Grants to the same holder may overlap (a renewal, a wider or narrower
    grant): no address changes hands. A grant past its not_after still counts, as it is still referred."""
    taken = sorted((d for d in node.delegations.overlapping_grants(prefix) if d.holder != holder),
                   key=lambda d: (d.prefix.prefixlen, d.prefix.network_address))
    if not taken:
        return
    first = taken[0]
    if first.prefix == prefix:
        where = f"{prefix} is"
    elif contains(first.prefix, prefix):
        where = f"{prefix} lies inside {first.prefix},"
    else:
        where = f"{prefix} contains {first.prefix},"
    others = len(taken) - 1
    more = f" (and {others} more grant{'s' if others > 1 else ''}); revoke those" if others else "; revoke that"
    raise Conflict(f"{where} granted to {first.holder}{more} first", code="granted_elsewhere")


def refuse_unanchored(node: Node) -> None:
    """A node without a trust anchor acts as a root; one that holds space from a root is not one. A grant it
    signed would start a chain no client trusts, and served it would call itself the root and weigh reporters'
    credentials against its own key."""
    held = node.delegations.list_delegations(Role.HELD)
    if held:
        root = held[0].chain[0]["delegation"]["issuer"] if held[0].chain else held[0].delegation.issuer
        raise Forbidden(f"this node holds space under the root {root} but has no trust anchor, so it would sign "
                        f"as a root; set it with --anchor {root} (or NETIMMUNE_TRUST_ANCHOR)", code="no_anchor")


def _held_parent(node: Node, prefix) -> DelegationMatch:
    """The most specific delegation held over prefix that names this node's key as holder: a grant hung below
    one held by another key would be a chain that does not validate (wrong issuer)."""
    now = node.clock.now()
    held = [m for m in node.delegations.list_delegations(Role.HELD)
            if contains(m.delegation.prefix, prefix) and m.delegation.valid_at(now)]
    if not held:
        raise Forbidden(f"{prefix} is not inside any space this node holds; install a delegation first",
                        code="not_held")
    own = [m for m in held if m.delegation.holder == node.key.public]
    if not own:
        raise Forbidden(f"the delegation held for {prefix} names {held[0].delegation.holder} as holder, not this "
                        f"node's key {node.key.public}; use that key, or install a delegation for this one",
                        code="not_holder")
    return max(own, key=lambda m: m.delegation.prefix.prefixlen)


def install(node: Node, chain: Any) -> Delegation:
    """Install a chain from the anchor down to a delegation held by this node's key."""
    chain = chain.get("chain") if isinstance(chain, dict) and "chain" in chain else chain
    if isinstance(chain, dict):
        chain = [chain]
    if not isinstance(chain, Sequence) or isinstance(chain, str):
        raise BadRequest("expected a chain: a list of signed delegations, root first")
    verdict = validate_chain(list(chain), node.anchor, node.clock.now())
    if not verdict.ok:
        hint = (f" (this node's trust anchor is {node.anchor}; if another root signed the chain, set it with "
                "--anchor or NETIMMUNE_TRUST_ANCHOR)") if verdict.error is ChainError.UNTRUSTED_ROOT else ""
        raise Unprocessable(f"chain refused: {verdict.explain()}{hint}", code=f"chain_{verdict.error.value}")
    if verdict.leaf.holder != node.key.public:
        raise Forbidden("the last delegation of the chain is held by another key, not this node's",
                        code="not_holder")
    try:
        node.delegations.save_delegations(Role.HELD, [verdict.leaf], [list(chain)])
    except StaleDelegation as exc:
        raise Unprocessable(str(exc), code="stale_serial") from None
    return verdict.leaf


def revoke(node: Node, prefix_text: str) -> None:
    prefix = parse_space(prefix_text, dev_mode=True)
    if not node.delegations.remove_delegation(Role.GRANTED, prefix):
        raise NotFound(f"no delegation granted for {prefix}")


def list_delegations(node: Node) -> dict:
    return {role.value: [{"prefix": str(m.delegation.prefix), "holder": m.delegation.holder,
                          "endpoint": m.delegation.endpoint, "serial": m.delegation.serial,
                          "not_after": m.delegation.document["delegation"]["not_after"],
                          "document": m.delegation.document}
                         for m in node.delegations.list_delegations(role)]
            for role in Role}
