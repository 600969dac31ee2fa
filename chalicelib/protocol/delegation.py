"""Signed delegations and the rules a chain of them must satisfy (DESIGN.md §2).

Each rule is one small function that names what is wrong, so a refused chain tells an operator which
link failed and why, the way an RPKI validator reports a rejected object.
"""
from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

from .encoding import EncodingError, format_time, parse_time
from .keys import InvalidKey, KeyPair, parse_public_key
from .prefixes import AddressError, IPAddress, IPNetwork, contains, parse_prefix, special_purpose
from .signing import sign_object, signature_problem

MAX_CHAIN_DEPTH = 8
FIELDS = ("prefix", "holder", "endpoint", "issuer", "serial", "not_before", "not_after")
_BLANK = re.compile(r"[\x00-\x20\x7f]")
_AUTHORITY = re.compile(r"(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)(?::(?P<port>[0-9]{1,5}))?")
_NUMERIC_LABEL = re.compile(r"[0-9]+|0[xX][0-9A-Fa-f]*")


class MalformedDelegation(ValueError):
    """A delegation document that does not have the form of DESIGN.md §2."""


@dataclass(frozen=True)
class Delegation:
    """The parsed fields plus the document exactly as signed, which is what travels and is verified."""

    prefix: IPNetwork
    holder: str
    endpoint: str
    issuer: str
    serial: int
    not_before: datetime
    not_after: datetime
    document: dict

    @property
    def signature(self) -> dict:
        return self.document["signature"]

    def valid_at(self, now: datetime) -> bool:
        return self.not_before <= now <= self.not_after


def check_endpoint(endpoint: Any) -> str:
    """What a delegation may carry, as received or stored: the base of a node's /v1 API, an absolute http(s) URL
    with a host and no query or fragment (the rule of every release, so no stored grant becomes unreadable). A
    client judges the addresses the host resolves to before it connects (client/fetch.py)."""
    if not isinstance(endpoint, str):
        raise MalformedDelegation("endpoint must be a URL string")
    try:
        parts = urlsplit(endpoint)
    except ValueError as exc:
        raise MalformedDelegation(f"endpoint {endpoint!r} is not a URL ({exc})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise MalformedDelegation(f"endpoint {endpoint!r} must be an http(s) URL with a host and no query")
    return endpoint.rstrip("/")


def plain_endpoint(endpoint: Any) -> str:
    """What this node signs, or serves at: check_endpoint, with nothing a client would have to interpret
    (credentials, an empty query or fragment before the /v1/... it appends), and a host written so plainly that
    the node that signs it and every client that connects to it read the same one."""
    endpoint = check_endpoint(endpoint)
    problem = _endpoint_form_problem(endpoint)
    if problem:
        raise MalformedDelegation(f"endpoint {endpoint!r} {problem}")
    return endpoint


def _endpoint_form_problem(endpoint: str) -> str | None:
    if _BLANK.search(endpoint):
        return "must have no spaces or control characters"  # urlsplit drops tabs and newlines, httpx refuses them
    if "?" in endpoint or "#" in endpoint:
        return "must have no query or fragment"
    try:
        parts = urlsplit(endpoint)
    except ValueError as exc:
        return f"is not a URL ({exc})"
    if parts.scheme not in ("http", "https"):
        return "must be an http(s) URL"
    if "@" in parts.netloc:
        return "must carry no credentials"
    authority = _AUTHORITY.fullmatch(parts.netloc)
    if not authority or authority["port"] and not 0 < int(authority["port"]) < 65536:
        return ("must have a host (a name of letters, digits, '.', '-' and '_', an international one in its xn-- "
                "form, or an IP address) and a port from 1 to 65535 if any")
    return _host_problem(authority["host"])


def _host_problem(host: str) -> str | None:
    """An IP literal in its one standard spelling: resolvers also read 127.1, 2130706433 or 0x7f000001 as
    addresses, which an address check on the text would take for names."""
    if host.startswith("["):
        return None if isinstance(ip_literal(host[1:-1]), ipaddress.IPv6Address) else "has a bad IPv6 address"
    if _NUMERIC_LABEL.fullmatch(host.removesuffix(".").rpartition(".")[2]) and ip_literal(host) is None:
        return "must write an IPv4 address as four decimal numbers (192.0.2.1)"
    return None


def ip_literal(host: str) -> IPAddress | None:
    """The address a URL's host (without brackets) spells, or None for a name."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def refused_address(address: IPAddress, allow_local: bool) -> str | None:
    """The special-purpose range that keeps reporters from sending to address (see endpoint_refusal)."""
    return None if allow_local else special_purpose(address)


def endpoint_refusal(scheme: str, host: str | None, allow_local: bool) -> str | None:
    """Why reporters will not send to an endpoint, judged by its text, or None. Reports go over https (DESIGN.md
    §2) to global addresses only: a delegation's endpoint is whatever its issuer signed, and must not steer
    reporters to a cloud's metadata service or into their own network. A host name is judged when a client
    resolves it. `allow_local` (dev mode) lifts both rules, for test trees on loopback. The client applies
    this before every request and a node before it signs a grant, so a node never signs what reporters refuse."""
    if scheme != "https" and not (allow_local and scheme == "http"):
        return "it is not https"
    if not host:
        return "it has no host"
    address = ip_literal(host)
    name = None if address is None else refused_address(address, allow_local)
    return f"{address} is special-purpose space ({name})" if name else None


def parse_delegation(document: Any) -> Delegation:
    if not isinstance(document, dict) or set(document) != {"delegation", "signature"}:
        raise MalformedDelegation("a delegation is an object with exactly 'delegation' and 'signature'")
    body = document["delegation"]
    if not isinstance(body, dict) or set(body) != set(FIELDS):
        raise MalformedDelegation(f"delegation must have exactly the fields {', '.join(FIELDS)}")
    try:
        prefix = parse_prefix(body["prefix"])
        for field in ("holder", "issuer"):
            parse_public_key(body[field])
        not_before, not_after = parse_time(body["not_before"]), parse_time(body["not_after"])
    except (AddressError, InvalidKey, EncodingError) as exc:
        raise MalformedDelegation(str(exc)) from None
    serial = body["serial"]
    if not isinstance(serial, int) or isinstance(serial, bool) or not 0 <= serial < 2**53:
        raise MalformedDelegation("serial must be a non-negative integer below 2^53")
    if not_after < not_before:
        raise MalformedDelegation("not_after is before not_before")
    return Delegation(prefix, body["holder"], check_endpoint(body["endpoint"]), body["issuer"], serial,
                      not_before, not_after, document)


def issue_delegation(issuer: KeyPair, prefix: IPNetwork, holder: str, endpoint: str, serial: int,
                     not_before: datetime, not_after: datetime) -> Delegation:
    body = {"prefix": str(prefix), "holder": holder, "endpoint": plain_endpoint(endpoint),
            "issuer": issuer.public, "serial": serial,
            "not_before": format_time(not_before), "not_after": format_time(not_after)}
    return parse_delegation({"delegation": body, "signature": sign_object(body, issuer)})


class ChainError(StrEnum):
    EMPTY = "empty"
    TOO_DEEP = "too_deep"
    MALFORMED = "malformed"
    UNTRUSTED_ROOT = "untrusted_root"
    WRONG_ISSUER = "wrong_issuer"
    PREFIX_OUTSIDE_PARENT = "prefix_outside_parent"
    BAD_SIGNATURE = "bad_signature"
    NOT_YET_VALID = "not_yet_valid"
    EXPIRED = "expired"
    LOOP = "loop"


@dataclass(frozen=True)
class ChainVerdict:
    """The outcome of validating a chain: the parsed links, or the first failure with its position."""

    delegations: tuple[Delegation, ...]
    error: ChainError | None = None
    index: int | None = None
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def leaf(self) -> Delegation:
        return self.delegations[-1]

    def explain(self) -> str:
        if self.ok:
            return f"valid chain of {len(self.delegations)} delegation(s)"
        where = "" if self.index is None else f" at link {self.index}"
        return f"{self.error.value}{where}: {self.detail}"


@dataclass(frozen=True)
class _Link:
    index: int
    current: Delegation
    parent: Delegation | None
    anchor: str
    now: datetime
    seen_keys: frozenset[str]


Rule = Callable[[_Link], "tuple[ChainError, str] | None"]


def _issuer_is_trusted(link: _Link):
    if link.parent is None and link.current.issuer != link.anchor:
        return ChainError.UNTRUSTED_ROOT, "the first delegation is not issued by the trust anchor"
    if link.parent is not None and link.current.issuer != link.parent.holder:
        return ChainError.WRONG_ISSUER, "issuer is not the holder of the previous delegation"
    return None


def _signature_verifies(link: _Link):
    problem = signature_problem(link.current.document["delegation"], link.current.signature,
                                signer=link.current.issuer)
    return (ChainError.BAD_SIGNATURE, problem) if problem else None


def _prefix_inside_parent(link: _Link):
    if link.parent is not None and not contains(link.parent.prefix, link.current.prefix):
        return (ChainError.PREFIX_OUTSIDE_PARENT,
                f"{link.current.prefix} is not inside {link.parent.prefix}")
    return None


def _within_validity_window(link: _Link):
    if link.now < link.current.not_before:
        return ChainError.NOT_YET_VALID, f"valid only from {format_time(link.current.not_before)}"
    if link.now > link.current.not_after:
        return ChainError.EXPIRED, f"expired at {format_time(link.current.not_after)}"
    return None


def _holder_not_seen_before(link: _Link):
    if link.current.holder in link.seen_keys:
        return ChainError.LOOP, "holder already appears earlier in the chain"
    return None


RULES: tuple[Rule, ...] = (_issuer_is_trusted, _signature_verifies, _prefix_inside_parent,
                           _within_validity_window, _holder_not_seen_before)


def validate_chain(chain: Sequence[Any], anchor: str, now: datetime,
                   max_depth: int = MAX_CHAIN_DEPTH) -> ChainVerdict:
    """Apply every rule to every link, root first; the first failure decides."""
    if not isinstance(chain, (list, tuple)) or not chain:
        return ChainVerdict((), ChainError.EMPTY, None, "a chain needs at least one delegation")
    if len(chain) > max_depth:
        return ChainVerdict((), ChainError.TOO_DEEP, None, f"{len(chain)} links, at most {max_depth}")
    parsed: list[Delegation] = []
    seen = {anchor}
    for index, document in enumerate(chain):
        try:
            current = parse_delegation(document)
        except MalformedDelegation as exc:
            return ChainVerdict(tuple(parsed), ChainError.MALFORMED, index, str(exc))
        link = _Link(index, current, parsed[-1] if parsed else None, anchor, now, frozenset(seen))
        for rule in RULES:
            failure = rule(link)
            if failure:
                return ChainVerdict(tuple(parsed), failure[0], index, failure[1])
        parsed.append(current)
        seen.add(current.holder)
    return ChainVerdict(tuple(parsed))
