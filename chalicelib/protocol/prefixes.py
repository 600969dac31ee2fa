"""IPv4 and IPv6 addresses and prefixes, and the IANA special-purpose ranges no report may target."""
from __future__ import annotations

import ipaddress
import re
import socket
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network


# address/length with a plain decimal length: ip_network alone also takes netmasks (/255.255.255.0),
# hostmasks, zero-padded lengths, scope ids and surrounding whitespace
_CIDR = re.compile(r"[0-9A-Fa-f.:]+/(?:0|[1-9][0-9]{0,2})")


class AddressError(ValueError):
    """Text that is not an address or prefix in the form the protocol accepts."""


def parse_ip(text: str) -> IPAddress:
    """An address; IPv4-mapped IPv6 (::ffff:a.b.c.d) is the IPv4 address it maps, so both spellings meet.

    inet_pton parses strictly (no leading zeros, no short forms) and several times faster than
    ipaddress, which matters on the refer path.
    """
    if not isinstance(text, str):
        raise AddressError("address must be a string")
    text = text.strip()
    try:
        if ":" not in text:
            return IPv4Address(socket.inet_pton(socket.AF_INET, text))
        address = IPv6Address(socket.inet_pton(socket.AF_INET6, text))
    except (OSError, ValueError):
        if _scoped_ipv6(text):
            raise AddressError(f"{text!r}: scoped addresses are not routable") from None
        raise AddressError(f"{text!r} is not an IPv4 or IPv6 address") from None
    return address.ipv4_mapped or address


def _scoped_ipv6(text: str) -> bool:
    """fe80::1%eth0 is an address with a zone, which no other host can route to; "%zz" is no address at all."""
    address, zone, _ = text.partition("%")
    try:
        return bool(zone) and bool(socket.inet_pton(socket.AF_INET6, address))
    except (OSError, ValueError):
        return False


def parse_prefix(text: str) -> IPNetwork:
    """A prefix in CIDR form with no host bits set (198.51.100.0/24, 2001:db8::/32)."""
    if not isinstance(text, str) or not _CIDR.fullmatch(text):
        raise AddressError(f"{text!r} is not a prefix in CIDR form (address/length)")
    try:
        return ipaddress.ip_network(text, strict=True)
    except ValueError as exc:
        raise AddressError(f"{text!r} is not a valid prefix: {exc}") from None


def address_range(network: IPNetwork) -> tuple[int, bytes, bytes]:
    """(family, first, last) with addresses as fixed-width big-endian bytes, so byte order is address order."""
    return network.version, network.network_address.packed, network.broadcast_address.packed


def contains(outer: IPNetwork, inner: IPNetwork) -> bool:
    return outer.version == inner.version and inner.subnet_of(outer)


# IANA IPv4/IPv6 Special-Purpose Address Registries (RFC 6890 and updates), plus multicast.
SPECIAL_PURPOSE: tuple[tuple[IPNetwork, str], ...] = tuple(
    (ipaddress.ip_network(prefix), name)
    for prefix, name in (
        ("0.0.0.0/8", "this network"),
        ("10.0.0.0/8", "private use"),
        ("100.64.0.0/10", "shared address space (CGN)"),
        ("127.0.0.0/8", "loopback"),
        ("169.254.0.0/16", "link local"),
        ("172.16.0.0/12", "private use"),
        ("192.0.0.0/24", "IETF protocol assignments"),
        ("192.0.2.0/24", "documentation (TEST-NET-1)"),
        ("192.31.196.0/24", "AS112-v4"),
        ("192.52.193.0/24", "AMT"),
        ("192.88.99.0/24", "deprecated 6to4 relay anycast"),
        ("192.168.0.0/16", "private use"),
        ("192.175.48.0/24", "direct delegation AS112 service"),
        ("198.18.0.0/15", "benchmarking"),
        ("198.51.100.0/24", "documentation (TEST-NET-2)"),
        ("203.0.113.0/24", "documentation (TEST-NET-3)"),
        ("224.0.0.0/4", "multicast"),
        ("240.0.0.0/4", "reserved"),
        ("255.255.255.255/32", "limited broadcast"),
        ("::/128", "unspecified address"),
        ("::1/128", "loopback"),
        ("::ffff:0:0/96", "IPv4-mapped address"),
        ("64:ff9b::/96", "IPv4-IPv6 translation"),
        ("64:ff9b:1::/48", "IPv4-IPv6 local-use translation"),
        ("100::/64", "discard-only"),
        ("2001::/23", "IETF protocol assignments"),
        ("2001:db8::/32", "documentation"),
        ("2002::/16", "6to4"),
        ("3fff::/20", "documentation"),
        ("5f00::/16", "segment routing SIDs"),
        ("fc00::/7", "unique local"),
        ("fe80::/10", "link-local unicast"),
        ("ff00::/8", "multicast"),
    )
)


# The same ranges as integer bounds per IP version, checked on every refer and report: a few comparisons,
# no objects.
_SPECIAL_BOUNDS = {version: tuple((int(reserved.network_address), int(reserved.broadcast_address), name)
                                  for reserved, name in SPECIAL_PURPOSE if reserved.version == version)
                   for version in (4, 6)}


def special_purpose(target: IPAddress | IPNetwork) -> str | None:
    """The registry name of the special-purpose range holding `target`, or None for global unicast space.

    A prefix counts only when it lies wholly inside a special range: 192.0.0.0/8 is ordinary space that
    happens to contain documentation /24s.
    """
    if isinstance(target, (IPv4Network, IPv6Network)):
        version, first, last = target.version, int(target.network_address), int(target.broadcast_address)
    else:
        version, first = target.version, int(target)
        last = first
    for low, high, name in _SPECIAL_BOUNDS[version]:
        if low <= first and last <= high:
            return name
    return None
