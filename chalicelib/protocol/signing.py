"""Detached Ed25519 signatures over the RFC 8785 (JCS) canonical bytes of one JSON object."""
from __future__ import annotations

from typing import Any

import rfc8785

from .canonical import canonical_json
from .encoding import EncodingError, b64url_decode, b64url_encode
from .keys import InvalidKey, KeyPair, parse_public_key, verify_raw

ALGORITHM = "ed25519"
_SIGNATURE_FIELDS = {"alg", "key", "sig"}


class CanonicalizationError(ValueError):
    """The object holds something JCS cannot represent (e.g. a float out of range)."""


def canonical_bytes(obj: Any) -> bytes:
    try:
        return canonical_json(obj)
    except (rfc8785.CanonicalizationError, TypeError, ValueError) as exc:
        raise CanonicalizationError(str(exc)) from None


def sign_object(obj: Any, key: KeyPair) -> dict:
    """The signature object of DESIGN.md §2."""
    return {"alg": ALGORITHM, "key": key.public, "sig": b64url_encode(key.sign(canonical_bytes(obj)))}


def signature_problem(obj: Any, signature: Any, signer: str | None = None) -> str | None:
    """Why `signature` does not prove `obj` (signed by `signer` when given); None when it does."""
    try:
        message = canonical_bytes(obj)
    except CanonicalizationError as exc:
        return f"cannot canonicalize signed object: {exc}"
    return bytes_signature_problem(message, signature, signer)


def bytes_signature_problem(message: bytes, signature: Any, signer: str | None = None) -> str | None:
    """The same check over canonical bytes the caller already has (intake needs them for the digest too)."""
    if not isinstance(signature, dict) or signature.keys() != _SIGNATURE_FIELDS:
        return "signature must be an object with exactly alg, key and sig"
    if signature["alg"] != ALGORITHM:
        return f"unsupported signature algorithm {signature['alg']!r}"
    if signer is not None and signature["key"] != signer:
        return "signed by a different key than the one named"
    try:
        parse_public_key(signature["key"])
        raw = b64url_decode(signature["sig"])
    except (InvalidKey, EncodingError) as exc:
        return f"malformed signature: {exc}"
    if len(raw) != 64:
        return "malformed signature: must be 64 bytes"
    if not verify_raw(signature["key"], message, raw):
        return "signature does not verify"
    return None
