"""Every chain rule of DESIGN.md §2, each with the case that makes it fail."""
from __future__ import annotations

import copy
from datetime import timedelta

import pytest

from chalicelib.protocol.delegation import ChainError, MalformedDelegation, parse_delegation, validate_chain
from chalicelib.protocol.keys import KeyPair
from tests.conftest import NOW, delegate


@pytest.fixture
def chain(root_key, isp_key, customer_key):
    return [delegate(root_key, "127.0.0.0/8", isp_key).document,
            delegate(isp_key, "127.0.1.0/24", customer_key).document]


def test_a_well_formed_chain_from_the_anchor_is_valid(chain, root_key, customer_key):
    verdict = validate_chain(chain, root_key.public, NOW)
    assert verdict.ok, verdict.explain()
    assert verdict.leaf.holder == customer_key.public
    assert str(verdict.leaf.prefix) == "127.0.1.0/24"


def test_ipv6_chains_are_first_class(root_key, isp_key, customer_key):
    chain = [delegate(root_key, "2001:db8::/32", isp_key).document,
             delegate(isp_key, "2001:db8:ff00::/40", customer_key).document]
    assert validate_chain(chain, root_key.public, NOW).ok


def test_chain_not_signed_by_the_anchor_is_untrusted(chain, isp_key):
    other_root = KeyPair.generate()
    verdict = validate_chain([delegate(other_root, "127.0.0.0/8", isp_key).document, chain[1]],
                             KeyPair.generate().public, NOW)
    assert (verdict.error, verdict.index) == (ChainError.UNTRUSTED_ROOT, 0)


def test_issuer_that_is_not_the_previous_holder_is_refused(root_key, isp_key, customer_key):
    stranger = KeyPair.generate()
    chain = [delegate(root_key, "127.0.0.0/8", isp_key).document,
             delegate(stranger, "127.0.1.0/24", customer_key).document]
    verdict = validate_chain(chain, root_key.public, NOW)
    assert (verdict.error, verdict.index) == (ChainError.WRONG_ISSUER, 1)


def test_prefix_outside_its_parent_is_refused(root_key, isp_key, customer_key):
    chain = [delegate(root_key, "127.0.0.0/16", isp_key).document,
             delegate(isp_key, "127.1.0.0/24", customer_key).document]
    verdict = validate_chain(chain, root_key.public, NOW)
    assert (verdict.error, verdict.index) == (ChainError.PREFIX_OUTSIDE_PARENT, 1)


def test_a_wider_prefix_than_the_parent_is_outside_it(root_key, isp_key, customer_key):
    chain = [delegate(root_key, "127.0.0.0/16", isp_key).document,
             delegate(isp_key, "127.0.0.0/8", customer_key).document]
    assert validate_chain(chain, root_key.public, NOW).error is ChainError.PREFIX_OUTSIDE_PARENT


def test_ipv6_child_of_ipv4_parent_is_outside_it(root_key, isp_key, customer_key):
    chain = [delegate(root_key, "127.0.0.0/8", isp_key).document,
             delegate(isp_key, "2001:db8::/32", customer_key).document]
    assert validate_chain(chain, root_key.public, NOW).error is ChainError.PREFIX_OUTSIDE_PARENT


def test_expired_link_is_refused(chain, root_key, isp_key, customer_key):
    chain[1] = delegate(isp_key, "127.0.1.0/24", customer_key, not_before=NOW - timedelta(days=30),
                        not_after=NOW - timedelta(seconds=1)).document
    verdict = validate_chain(chain, root_key.public, NOW)
    assert (verdict.error, verdict.index) == (ChainError.EXPIRED, 1)


def test_link_not_yet_valid_is_refused(chain, root_key, isp_key):
    chain[0] = delegate(root_key, "127.0.0.0/8", isp_key, not_before=NOW + timedelta(minutes=1)).document
    verdict = validate_chain(chain, root_key.public, NOW)
    assert (verdict.error, verdict.index) == (ChainError.NOT_YET_VALID, 0)


def test_bad_signature_is_refused(chain, root_key):
    chain[1] = copy.deepcopy(chain[1])
    sig = chain[1]["signature"]["sig"]
    chain[1]["signature"]["sig"] = ("A" if sig[0] != "A" else "B") + sig[1:]
    verdict = validate_chain(chain, root_key.public, NOW)
    assert (verdict.error, verdict.index) == (ChainError.BAD_SIGNATURE, 1)


@pytest.mark.parametrize("field,value", [
    ("endpoint", "http://127.0.0.66:1"), ("serial", 99), ("prefix", "127.0.0.0/16"),
    ("not_after", "2099-01-01T00:00:00Z"),
])
def test_tampered_field_breaks_the_signature(chain, root_key, field, value):
    tampered = copy.deepcopy(chain[0])
    tampered["delegation"][field] = value
    verdict = validate_chain([tampered, chain[1]], root_key.public, NOW)
    assert (verdict.error, verdict.index) == (ChainError.BAD_SIGNATURE, 0)


def test_signature_by_another_key_than_the_issuer_is_refused(chain, root_key, isp_key, customer_key):
    forged = delegate(customer_key, "127.0.1.0/24", customer_key).document
    forged = {"delegation": {**forged["delegation"], "issuer": isp_key.public}, "signature": forged["signature"]}
    verdict = validate_chain([chain[0], forged], root_key.public, NOW)
    assert verdict.error is ChainError.BAD_SIGNATURE


def test_holder_reappearing_down_the_chain_is_a_loop(root_key, isp_key, customer_key):
    chain = [delegate(root_key, "127.0.0.0/8", isp_key).document,
             delegate(isp_key, "127.0.0.0/16", customer_key).document,
             delegate(customer_key, "127.0.0.0/24", isp_key).document]
    verdict = validate_chain(chain, root_key.public, NOW)
    assert (verdict.error, verdict.index) == (ChainError.LOOP, 2)


def test_delegation_back_to_the_anchor_is_a_loop(root_key, isp_key):
    chain = [delegate(root_key, "127.0.0.0/8", isp_key).document,
             delegate(isp_key, "127.0.0.0/16", root_key).document]
    assert validate_chain(chain, root_key.public, NOW).error is ChainError.LOOP


def test_chain_deeper_than_eight_is_refused(root_key):
    keys = [root_key] + [KeyPair.generate() for _ in range(9)]
    chain = [delegate(keys[i], f"127.0.0.0/{8 + i}", keys[i + 1]).document for i in range(9)]
    assert validate_chain(chain, root_key.public, NOW).error is ChainError.TOO_DEEP
    assert validate_chain(chain[:8], root_key.public, NOW).ok


def test_empty_chain_is_refused(root_key):
    assert validate_chain([], root_key.public, NOW).error is ChainError.EMPTY


@pytest.mark.parametrize("mangle", [
    lambda d: {"delegation": d["delegation"]},
    lambda d: {**d, "extra": 1},
    lambda d: {**d, "delegation": {**d["delegation"], "prefix": "127.0.0.1/8"}},
    lambda d: {**d, "delegation": {**d["delegation"], "holder": "rsa:abc"}},
    lambda d: {**d, "delegation": {**d["delegation"], "serial": -1}},
    lambda d: {**d, "delegation": {**d["delegation"], "serial": True}},
    lambda d: {**d, "delegation": {**d["delegation"], "not_after": "2027-01-01T00:00:00+01:00"}},
    lambda d: {**d, "delegation": {**d["delegation"], "endpoint": "ftp://127.0.0.1"}},
    lambda d: "not an object",
])
def test_malformed_link_is_refused_with_its_position(chain, root_key, mangle):
    verdict = validate_chain([chain[0], mangle(chain[1])], root_key.public, NOW)
    assert (verdict.error, verdict.index) == (ChainError.MALFORMED, 1)
    with pytest.raises(MalformedDelegation):
        parse_delegation(mangle(chain[1]))


def test_verdict_explains_the_failure_for_an_operator(chain, root_key):
    verdict = validate_chain(chain, KeyPair.generate().public, NOW)
    assert verdict.explain().startswith("untrusted_root at link 0: ")
