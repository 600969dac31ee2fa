"""The referral answer is written out by hand on the refer route's hot path: it must parse to the answer
the dict form gives, whatever the signed endpoint holds."""
from __future__ import annotations

import json

import pytest

from chalicelib.core.ports import DelegationMatch, Role
from chalicelib.core.referral import Answer, Referral
from chalicelib.protocol.keys import KeyPair
from tests.conftest import delegate


def expected_answer(answer: Answer, ip: str, ttl: int, delegation=None, chain=()) -> dict:
    head = {"answer": answer.value, "ip": ip, "ttl": ttl}
    if delegation is None:
        return head
    fields = delegation.document["delegation"]
    head.update(prefix=fields["prefix"], endpoint=fields["endpoint"].rstrip("/"), holder=fields["holder"],
                chain=[*chain, delegation.document])
    return head


@pytest.mark.parametrize("endpoint", ["http://127.0.0.1:9", "https://reports.example/v1/",
                                      'http://127.0.0.1:9/n\u00f6de/"quoted"\\path/'])
def test_referral_text_is_the_json_of_its_fields_and_chain(endpoint):
    root, child = KeyPair.generate(), KeyPair.generate()
    held = delegate(root, "127.0.0.0/8", child, endpoint=endpoint)
    granted = delegate(child, "127.0.1.0/24", KeyPair.generate(), endpoint=endpoint)
    held_match = DelegationMatch(Role.HELD, json.dumps(held.document), json.dumps([held.document]), 4e9)
    granted_match = DelegationMatch(Role.GRANTED, json.dumps(granted.document), json.dumps([held.document]),
                                    4e9)

    assert json.loads(Referral(Answer.AUTHORITATIVE, "127.0.0.9", 3600, held_match).to_json_text()) == expected_answer(
        Answer.AUTHORITATIVE, "127.0.0.9", 3600, held)
    assert json.loads(Referral(Answer.REFERRAL, "127.0.1.9", 60, granted_match).to_json_text()) == expected_answer(
        Answer.REFERRAL, "127.0.1.9", 60, granted, [held.document])


def test_answer_outside_this_nodes_space_is_the_bare_head():
    assert json.loads(Referral(Answer.NONE, "2001:db8::1", 300).to_json_text()) == expected_answer(Answer.NONE, "2001:db8::1", 300)
