"""The DelegationStore contract: longest-prefix match, roles, chains, replacement and removal."""
from __future__ import annotations

import ipaddress
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chalicelib.core.ports import Role, StaleDelegation
from chalicelib.protocol.keys import KeyPair
from chalicelib.protocol.prefixes import parse_ip
from tests.conftest import delegate

ISSUER = KeyPair.from_seed(b"\x01" * 32)
HOLDER = KeyPair.from_seed(b"\x02" * 32)


def prefix_of(match):
    return str(match.delegation.prefix) if match else None


def test_longest_match_prefers_the_most_specific_delegation(delegation_store):
    delegation_store.save_delegations(Role.HELD, [delegate(ISSUER, "127.0.0.0/8", HOLDER)], [["chain"]])
    delegation_store.save_delegations(Role.GRANTED, [delegate(HOLDER, "127.0.1.0/24", ISSUER)])
    assert prefix_of(delegation_store.longest_match(parse_ip("127.0.1.9"))) == "127.0.1.0/24"
    assert prefix_of(delegation_store.longest_match(parse_ip("127.0.2.9"))) == "127.0.0.0/8"
    assert delegation_store.longest_match(parse_ip("128.0.0.1")) is None
    assert delegation_store.longest_match(parse_ip("::1")) is None


def test_granted_match_carries_the_held_chain_above_it(delegation_store):
    held = delegate(ISSUER, "2001:db8::/32", HOLDER)
    delegation_store.save_delegations(Role.HELD, [held], [[held.document]])
    child = delegate(HOLDER, "2001:db8:1::/48", ISSUER)
    delegation_store.save_delegations(Role.GRANTED, [child])
    match = delegation_store.longest_match(parse_ip("2001:db8:1::5"))
    assert match.role is Role.GRANTED
    assert match.chain == [held.document, child.document]
    assert delegation_store.longest_match(parse_ip("2001:db8:2::5")).chain == [held.document]


def test_a_match_knows_when_its_delegation_expires(delegation_store):
    from tests.conftest import NOW

    held = delegate(ISSUER, "127.0.0.0/8", HOLDER, not_after=NOW + timedelta(days=2))
    delegation_store.save_delegations(Role.HELD, [held], [[held.document]])
    match = delegation_store.longest_match(parse_ip("127.0.0.9"))
    assert not match.expired(NOW + timedelta(days=2)) and match.expired(NOW + timedelta(days=2, seconds=1))
    assert not delegation_store.list_delegations(Role.HELD)[0].expired(NOW)


GRANTS = ["127.0.0.0/16", "127.0.1.0/24", "127.0.1.128/25", "127.1.0.0/16", "127.2.3.4/32", "2001:db8::/32",
          "2001:db8:1::/48", "2001:db8:1:2::/64"]


@pytest.mark.parametrize("asked", ["127.0.0.0/8", "127.0.1.0/24", "127.0.1.0/25", "127.0.1.192/26", "127.0.2.0/24",
                                   "127.2.0.0/16", "127.3.0.0/16", "0.0.0.0/0", "2001:db8:1::/56", "2001:db9::/32",
                                   "::/0"])
def test_overlapping_grants_are_those_containing_equal_to_or_inside_the_prefix(delegation_store, asked):
    from chalicelib.protocol.prefixes import contains

    delegation_store.save_delegations(Role.HELD, [delegate(ISSUER, "127.0.0.0/8", HOLDER)], [[]])
    delegation_store.save_delegations(Role.GRANTED, [delegate(HOLDER, p, ISSUER) for p in GRANTS])
    prefix = ipaddress.ip_network(asked)
    expected = {p for p in GRANTS if contains(ipaddress.ip_network(p), prefix)
                or contains(prefix, ipaddress.ip_network(p))}
    assert {str(d.prefix) for d in delegation_store.overlapping_grants(prefix)} == expected


def test_granting_the_whole_held_prefix_refers_it_on(delegation_store):
    delegation_store.save_delegations(Role.HELD, [delegate(ISSUER, "127.0.0.0/8", HOLDER)], [[]])
    delegation_store.save_delegations(Role.GRANTED, [delegate(HOLDER, "127.0.0.0/8", ISSUER)])
    assert delegation_store.longest_match(parse_ip("127.9.9.9")).role is Role.GRANTED


def test_removing_a_child_returns_its_space_to_the_parent(delegation_store):
    delegation_store.save_delegations(Role.GRANTED, [delegate(ISSUER, "127.0.0.0/8", HOLDER),
                                                     delegate(ISSUER, "127.0.1.0/24", HOLDER)])
    assert delegation_store.remove_delegation(Role.GRANTED, ipaddress.ip_network("127.0.1.0/24"))
    assert prefix_of(delegation_store.longest_match(parse_ip("127.0.1.9"))) == "127.0.0.0/8"
    assert not delegation_store.remove_delegation(Role.GRANTED, ipaddress.ip_network("127.0.1.0/24"))


def test_a_newer_serial_replaces_and_an_older_one_is_refused(delegation_store):
    delegation_store.save_delegations(Role.GRANTED, [delegate(ISSUER, "127.0.0.0/8", HOLDER, serial=2)])
    delegation_store.save_delegations(
        Role.GRANTED, [delegate(ISSUER, "127.0.0.0/8", HOLDER, endpoint="http://127.0.0.2:1", serial=3)])
    assert delegation_store.longest_match(parse_ip("127.0.0.1")).delegation.endpoint == "http://127.0.0.2:1"
    with pytest.raises(StaleDelegation):
        delegation_store.save_delegations(Role.GRANTED, [delegate(ISSUER, "127.0.0.0/8", HOLDER, serial=1)])
    assert delegation_store.next_serial(ipaddress.ip_network("127.0.0.0/8")) == 4
    assert len(delegation_store.list_delegations(Role.GRANTED)) == 1


@pytest.mark.parametrize("order", [
    # a one-address gap between two children still belongs to the parent
    ["127.0.0.0/24", "127.0.0.0/31", "127.0.0.3/32"],
    # a child cut into the middle of the parent's interval leaves the parent on both sides of it
    ["127.0.0.0/24", "127.0.0.7/32", "127.0.0.4/31"],
    ["127.0.0.7/32", "127.0.0.4/31", "127.0.0.0/24"],
])
def test_every_address_goes_to_its_innermost_delegation_whatever_the_insert_order(delegation_store, order):
    for prefix in order:
        delegation_store.save_delegations(Role.GRANTED, [delegate(ISSUER, prefix, HOLDER)])
    owners = {str(ipaddress.ip_network(p)): ipaddress.ip_network(p) for p in order}
    for last_octet in range(0, 12):
        address = parse_ip(f"127.0.0.{last_octet}")
        expected = max((n for n in owners.values() if address in n), key=lambda n: n.prefixlen)
        assert prefix_of(delegation_store.longest_match(address)) == str(expected), address


def test_tokens_are_found_by_hash_only(token_store, now):
    token_store.save_token("abc", "admin", "laptop", now)
    assert token_store.token_role("abc") == "admin"
    assert token_store.token_role("abd") is None


# --- property: the interval index agrees with a brute-force longest-prefix match -------------------

def _prefixes(version: int):
    """Prefixes packed into a few small regions, so they nest, touch and leave one-address gaps."""
    bits, longest = (32, 32) if version == 4 else (128, 64)
    shortest = 8 if version == 4 else 19
    lengths = st.one_of(st.integers(shortest, longest), st.integers(longest - 6, longest))
    regions = st.sampled_from([0x7F000000 << (bits - 32), 0xC6336400 << (bits - 32), (1 << bits) - (1 << 24) * (1 << (bits - 32))])
    offsets = st.integers(0, (1 << 6) - 1)

    def build(region, length, offset):
        value = region | (offset << (bits - longest))
        return ipaddress.ip_network((value >> (bits - length) << (bits - length), length))

    return st.builds(build, regions, lengths, offsets)


delegation_sets = st.lists(
    st.tuples(st.one_of(_prefixes(4), _prefixes(6)), st.sampled_from([Role.HELD, Role.GRANTED])),
    min_size=1, max_size=30, unique=True)


def _oracle(stored, address):
    covering = [(p.prefixlen, role is Role.GRANTED, p) for p, role in stored
                if p.version == address.version and address in p]
    return str(max(covering)[2]) if covering else None


def _probes(stored):
    for prefix, _ in stored:
        for address in (prefix.network_address, prefix.broadcast_address):
            yield address
            if int(address) > 0:
                yield address - 1
            if int(address) < (1 << address.max_prefixlen) - 1:
                yield address + 1


# A lookup on a DynamoDB backend is a request over the wire: fewer examples there, the same assertions.
EXAMPLES = {"dynamodb-moto": 25, "dynalite": 25}


def test_longest_match_agrees_with_brute_force(store_factory, request):
    @settings(max_examples=EXAMPLES.get(request.node.callspec.params["store_factory"], 200), deadline=None)
    @given(delegations=delegation_sets, removals=st.sets(st.integers(0, 29), max_size=8), bulk=st.booleans())
    def agrees(delegations, removals, bulk):
        store = store_factory()[0]
        documents = [(delegate(ISSUER, str(p), HOLDER), role) for p, role in delegations]
        for role in Role:
            docs = [d for d, r in documents if r is role]
            if bulk:
                # more than the bulk threshold forces the full rebuild path
                store.save_delegations(role, docs)
            else:
                for doc in docs:
                    store.save_delegations(role, [doc])
        stored = set(delegations)
        for index in sorted(removals):
            if index < len(delegations):
                prefix, role = delegations[index]
                store.remove_delegation(role, prefix)
                stored.discard((prefix, role))
        for address in _probes(delegations):
            assert prefix_of(store.longest_match(address)) == _oracle(stored, address), address

    agrees()
