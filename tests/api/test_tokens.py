"""Withdrawing API tokens: a revoked token is refused at once, and tokens are listed without the token itself."""
from __future__ import annotations

import pytest

from chalicelib.core.errors import BadRequest, NotFound
from chalicelib.core.tokens import list_tokens, revoke_token, token_hash
from tests.conftest import NOW


def test_a_revoked_token_is_refused_by_the_api(api):
    leaked, kept = api.token("reader"), api.token("reader")
    assert api.call("GET", "/v1/cases", token=leaked)[0] == 200
    revoke_token(api.node.tokens, token_hash(leaked)[:12])
    status, body = api.call("GET", "/v1/cases", token=leaked)
    assert (status, body["error"]["message"]) == (401, "unknown API token")
    assert api.call("GET", "/v1/cases", token=kept)[0] == 200


def test_a_token_may_be_revoked_by_the_token_itself(api):
    leaked = api.token("appliance")
    revoked = revoke_token(api.node.tokens, leaked)
    assert revoked["id"] == token_hash(leaked)[:12] and revoked["role"] == "appliance"
    assert api.call("GET", "/v1/blocklist", token=leaked)[0] == 401


def test_listed_tokens_show_an_id_role_label_and_creation_but_never_the_token(api):
    token = api.token("admin")
    listed = list_tokens(api.node.tokens)
    assert listed == [{"id": token_hash(token)[:12], "role": "admin", "label": "test",
                       "created": "2026-11-26T12:00:00Z"}]
    assert token not in str(listed) and token_hash(token) not in str(listed)


def test_revoking_an_unknown_id_says_so_and_revokes_nothing(api):
    token = api.token("reader")
    with pytest.raises(NotFound, match="no token with id 0123456789ab"):
        revoke_token(api.node.tokens, "0123456789ab")
    with pytest.raises(BadRequest, match="not a token id"):
        revoke_token(api.node.tokens, "abc")
    assert api.call("GET", "/v1/cases", token=token)[0] == 200


def test_an_id_two_tokens_share_is_refused_not_guessed(api):
    api.node.tokens.save_token("0123456789ab" + "0" * 52, "reader", "one", NOW)
    api.node.tokens.save_token("0123456789ab" + "1" * 52, "reader", "two", NOW)
    with pytest.raises(BadRequest, match="2 tokens"):
        revoke_token(api.node.tokens, "0123456789ab")
    assert len(list_tokens(api.node.tokens)) == 2
