"""API tokens for operators and their machines; only a hash is ever stored."""
from __future__ import annotations

import hashlib
import secrets
from datetime import datetime

from .errors import BadRequest, Forbidden, Unauthorized
from .ports import TokenStore

ROLES = ("admin", "reader", "appliance")
TOKEN_PREFIX = "nim_"


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(tokens: TokenStore, role: str, label: str, now: datetime) -> str:
    if role not in ROLES:
        raise BadRequest(f"unknown role {role!r}; choose one of {', '.join(ROLES)}")
    token = TOKEN_PREFIX + role + "_" + secrets.token_urlsafe(32)
    tokens.save_token(token_hash(token), role, label, now)
    return token


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
