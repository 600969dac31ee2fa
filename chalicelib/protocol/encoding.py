"""The few text encodings of the wire protocol: base64url without padding, RFC 3339 UTC times."""
from __future__ import annotations

import base64
import binascii
from datetime import datetime, timezone


class EncodingError(ValueError):
    """A field is not in the form the protocol requires."""


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    if not isinstance(text, str) or "=" in text:
        raise EncodingError("expected base64url text without padding")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise EncodingError(f"not base64url: {exc}") from None


def format_time(moment: datetime) -> str:
    """RFC 3339 in UTC with the `Z` suffix, whole seconds, as every signed object carries it."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> datetime:
    """Accept only RFC 3339 UTC with `Z`: one spelling per instant keeps signatures unambiguous."""
    if not isinstance(text, str) or not text.endswith("Z") or "T" not in text:
        raise EncodingError(f"timestamp {text!r} is not RFC 3339 UTC ending in 'Z'")
    try:
        moment = datetime.fromisoformat(text[:-1] + "+00:00")
    except ValueError:
        raise EncodingError(f"timestamp {text!r} is not RFC 3339") from None
    return moment.astimezone(timezone.utc)
