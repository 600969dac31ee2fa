"""The few text encodings of the wire protocol: base64url without padding, RFC 3339 UTC times."""
from __future__ import annotations

import base64
import binascii
import re
from datetime import datetime, timezone

# RFC 3339 date-time in UTC as the protocol writes it; Python's fromisoformat alone also takes ISO 8601's
# other spellings (basic format, week dates, missing seconds, comma fractions)
_RFC3339_UTC = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?Z")


class EncodingError(ValueError):
    """A field is not in the form the protocol requires."""


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Only the one spelling b64url_encode gives: a key's text is the reporter's identity, so a second spelling
    of the same key (a stray character the decoder skips, '+' for '-', non-zero trailing bits) would count as a
    second reporter."""
    if not isinstance(text, str) or "=" in text:
        raise EncodingError("expected base64url text without padding")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise EncodingError(f"not base64url: {exc}") from None
    if b64url_encode(raw) != text:
        raise EncodingError("not base64url in its one spelling (alphabet A-Z a-z 0-9 - _, unused bits zero)")
    return raw


def format_time(moment: datetime) -> str:
    """RFC 3339 in UTC with the `Z` suffix, whole seconds, as every signed object carries it."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> datetime:
    """Accept only RFC 3339 UTC with `Z` (YYYY-MM-DDTHH:MM:SS[.fraction]Z): one spelling per instant keeps
    signatures unambiguous. A leap second (:60) is refused: Python's datetime cannot hold it."""
    if not isinstance(text, str) or not _RFC3339_UTC.fullmatch(text):
        raise EncodingError(f"timestamp {text!r} is not RFC 3339 UTC (YYYY-MM-DDTHH:MM:SS[.fraction]Z)")
    try:
        moment = datetime.fromisoformat(text[:-1] + "+00:00")
    except ValueError as exc:
        raise EncodingError(f"timestamp {text!r} is not a valid date and time: {exc}") from None
    return moment.astimezone(timezone.utc)
