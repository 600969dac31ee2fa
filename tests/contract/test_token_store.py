"""The TokenStore contract: tokens are listed without the token itself, and a deleted one is gone."""
from __future__ import annotations

from datetime import timedelta


def test_tokens_are_listed_with_their_hash_role_label_and_creation_time(token_store, now):
    token_store.save_token("aa" * 32, "admin", "laptop", now)
    token_store.save_token("bb" * 32, "appliance", "edge firewall", now + timedelta(seconds=1))
    listed = sorted(token_store.list_tokens(), key=lambda record: record.token_hash)
    assert [(r.token_hash, r.role, r.label, r.created) for r in listed] == [
        ("aa" * 32, "admin", "laptop", now), ("bb" * 32, "appliance", "edge firewall", now + timedelta(seconds=1))]


def test_a_deleted_token_is_neither_found_nor_listed(token_store, now):
    token_store.save_token("aa" * 32, "reader", "", now)
    token_store.save_token("bb" * 32, "reader", "", now)
    assert token_store.delete_token("aa" * 32) is True
    assert token_store.token_role("aa" * 32) is None and token_store.token_role("bb" * 32) == "reader"
    assert [r.token_hash for r in token_store.list_tokens()] == ["bb" * 32]
    assert token_store.delete_token("aa" * 32) is False


def test_no_tokens_list_as_empty(token_store):
    assert token_store.list_tokens() == []
