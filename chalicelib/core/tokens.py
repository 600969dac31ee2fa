"""API tokens for operators and their machines; only a hash is ever stored."""
from __future__ import annotations

import hashlib
import secrets
from datetime import datetime

from ..protocol.encoding import format_time
from .errors import BadRequest, Forbidden, NotFound, Unauthorized
from .ports import StoredToken, TokenStore

ROLES = ("admin", "reader", "appliance")
TOKEN_PREFIX = "nim_"
# A token's id is the start of its hash: the token itself is never stored, and the start of a hash of 256 random
# bits tells nothing about it. 48 bits tell a node's tokens apart; revoking refuses an id two tokens share.
ID_DIGITS = 12
_HEX = frozenset("0123456789abcdef")


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def token_id(token: str) -> str:
    """The id `token list` shows for a token and `token revoke` takes."""
    return token_hash(token)[:ID_DIGITS]


def create_token(tokens: TokenStore, role: str, label: str, now: datetime) -> str:
    if role not in ROLES:
        raise BadRequest(f"unknown role {role!r}; choose one of {', '.join(ROLES)}")
    token = TOKEN_PREFIX + role + "_" + secrets.token_urlsafe(32)
    tokens.save_token(token_hash(token), role, label, now)
    return token


def describe(stored: StoredToken) -> dict:
    """What may be shown of a token: its id, role, label and creation time."""
    return {"id": stored.token_hash[:ID_DIGITS], "role": stored.role, "label": stored.label,
            "created": format_time(stored.created)}


def list_tokens(tokens: TokenStore) -> list[dict]:
    return [describe(stored) for stored in sorted(tokens.list_tokens(), key=lambda stored: stored.created)]


def revoke_token(tokens: TokenStore, which: str) -> dict:
    """Withdraw a token by the id `list_tokens` shows, or by the token itself (a leaked one is at hand)."""
    wanted = token_hash(which) if which.startswith(TOKEN_PREFIX) else which.lower()
    if len(wanted) < ID_DIGITS or not _HEX.issuperset(wanted):
        raise BadRequest(f"{which!r} is not a token id ({ID_DIGITS} hex digits, as `token list` shows) or a token")
    found = [stored for stored in tokens.list_tokens() if stored.token_hash.startswith(wanted)]
    if not found:
        raise NotFound(f"no token with id {wanted[:ID_DIGITS]}")
    if len(found) > 1:
        raise BadRequest(f"{len(found)} tokens have an id starting {wanted}; revoke by the token itself")
    tokens.delete_token(found[0].token_hash)
    return describe(found[0])


# RFC 6750: a 401 for a missing or unknown token names the scheme to use
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="netimmune"'}


def require_role(tokens: TokenStore, authorization: str | None, *allowed: str) -> str:
    """The caller's role, if it is one of `allowed`; admin may do everything."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():  # the scheme's name is case-insensitive (RFC 9110)
        raise Unauthorized("send an API token as 'Authorization: Bearer <token>'", headers=_CHALLENGE)
    role = tokens.token_role(token_hash(token.strip()))
    if role is None:
        raise Unauthorized("unknown API token", headers=_CHALLENGE)
    if role != "admin" and role not in allowed:
        raise Forbidden(f"a {role} token may not do this; it needs {' or '.join(('admin',) + allowed)}")
    return role
