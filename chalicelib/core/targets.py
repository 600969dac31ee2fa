"""Turning untrusted address text into an address this node may act on."""
from __future__ import annotations

from ..protocol.prefixes import AddressError, IPAddress, IPNetwork, parse_ip, parse_prefix, special_purpose
from .errors import BadRequest, Unprocessable


def parse_target(text: str, dev_mode: bool) -> IPAddress:
    """An address a report or referral may be about; special-purpose space only in dev mode."""
    try:
        address = parse_ip(text)
    except AddressError as exc:
        raise BadRequest(str(exc), code="bad_address") from None
    refuse_special(address, dev_mode)
    return address


def parse_space(text: str, dev_mode: bool) -> IPNetwork:
    try:
        prefix = parse_prefix(text)
    except AddressError as exc:
        raise BadRequest(str(exc), code="bad_prefix") from None
    refuse_special(prefix, dev_mode)
    return prefix


def refuse_special(target, dev_mode: bool) -> None:
    name = special_purpose(target)
    if name and not dev_mode:
        raise Unprocessable(f"{target} is special-purpose space ({name}); only a dev-mode node accepts it",
                            code="special_purpose")
