"""Finding the node responsible for an address: follow referrals from the root, verify every chain.

Like a DNS resolver: start at the root (or at the deepest cached referral covering the address), ask
`/v1/refer/{ip}`, and follow referral answers down until a node answers authoritative or none. Every
answer's chain is validated from the trust anchor, each hop must go deeper than the last, and a
referral back to a node already asked is a loop.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import StrEnum

import httpx

from ..protocol.delegation import MAX_CHAIN_DEPTH, Delegation, validate_chain
from ..protocol.prefixes import IPAddress, IPNetwork, parse_ip


class Failure(StrEnum):
    UNREACHABLE = "unreachable"      # a node did not answer over HTTP
    BAD_ANSWER = "bad_answer"        # an answer that is not a referral document
    BAD_CHAIN = "bad_chain"          # a chain that does not validate from the trust anchor
    LOOP = "loop"                    # a referral back to a node already asked
    TOO_DEEP = "too_deep"            # more hops than a chain may have links
    NO_PROGRESS = "no_progress"      # a referral that is not more specific than the last


class ResolutionError(Exception):
    def __init__(self, failure: Failure, message: str, hops: list[str]):
        super().__init__(message)
        self.failure = failure
        self.message = message
        self.hops = hops


@dataclass(frozen=True)
class Resolution:
    """Where reports for `ip` go: `endpoint`, proven by `chain`; or nobody when answer is "none"."""

    ip: str
    answer: str                          # "authoritative" or "none"
    hops: tuple[str, ...]
    endpoint: str | None = None
    prefix: str | None = None
    chain: tuple[dict, ...] = ()
    document: dict = field(default_factory=dict)

    @property
    def owned(self) -> bool:
        return self.answer == "authoritative"


@dataclass
class _CachedReferral:
    prefix: IPNetwork
    endpoint: str
    depth: int
    expires: float


class Resolver:
    def __init__(self, root_url: str, root_key: str, http: httpx.Client | None = None,
                 now: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
                 monotonic: Callable[[], float] = time.monotonic):
        self.root_url = root_url.rstrip("/")
        self.root_key = root_key
        self.http = http or httpx.Client(timeout=10.0)
        self.now = now
        self.monotonic = monotonic
        self._referrals: list[_CachedReferral] = []
        self._answers: dict[str, tuple[Resolution, float]] = {}

    def resolve(self, ip_text: str) -> Resolution:
        ip = parse_ip(ip_text)
        cached = self._answers.get(str(ip))
        if cached and cached[1] > self.monotonic():
            return cached[0]
        start = self._deepest_referral(ip)
        url, depth = (start.endpoint, start.depth) if start else (self.root_url, 0)
        return self._walk(ip, url, depth)

    def forget(self, ip_text: str) -> None:
        """Drop what is cached for ip: a node said it no longer answers for it."""
        ip = parse_ip(ip_text)
        self._answers.pop(str(ip), None)
        self._referrals = [r for r in self._referrals if not (ip.version == r.prefix.version and ip in r.prefix)]

    def _walk(self, ip: IPAddress, url: str, depth: int) -> Resolution:
        hops: list[str] = []
        while True:
            if url in hops:
                raise ResolutionError(Failure.LOOP, f"referral loop back to {url}", hops)
            if len(hops) > MAX_CHAIN_DEPTH:
                raise ResolutionError(Failure.TOO_DEEP, f"more than {MAX_CHAIN_DEPTH} referrals", hops)
            hops.append(url)
            body = self._ask(url, ip, hops)
            if body["answer"] == "none":
                resolution = Resolution(str(ip), "none", tuple(hops), document=body)
                self._remember(resolution, body)
                return resolution
            leaf = self._verified_leaf(body, ip, depth, hops)
            if body["answer"] == "authoritative":
                resolution = Resolution(str(ip), "authoritative", tuple(hops), leaf.endpoint, str(leaf.prefix),
                                        tuple(body["chain"]), body)
                self._remember(resolution, body)
                return resolution
            depth = len(body["chain"])
            self._referrals.append(_CachedReferral(leaf.prefix, leaf.endpoint, depth,
                                                   self.monotonic() + self._ttl(body)))
            url = leaf.endpoint

    def follow(self, ip_text: str, referral: dict) -> Resolution:
        """Continue from a referral a node handed back (a 421 on submit), verifying it like any other."""
        ip = parse_ip(ip_text)
        hops = ["(misdirected)"]
        if not isinstance(referral, dict) or referral.get("answer") != "referral":
            raise ResolutionError(Failure.BAD_ANSWER, "the node refused the report without a referral", hops)
        leaf = self._verified_leaf(referral, ip, 0, hops)
        return self._walk(ip, leaf.endpoint, len(referral["chain"]))

    def _ask(self, url: str, ip: IPAddress, hops: list[str]) -> dict:
        try:
            response = self.http.get(f"{url}/v1/refer/{ip}")
        except httpx.HTTPError as exc:
            raise ResolutionError(Failure.UNREACHABLE, f"{url} did not answer: {exc}", hops) from None
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict) or body.get("answer") not in ("authoritative", "referral", "none"):
            message = (body or {}).get("error", {}).get("message") if isinstance(body, dict) else None
            raise ResolutionError(Failure.BAD_ANSWER, f"{url} answered HTTP {response.status_code}"
                                  + (f": {message}" if message else " without a referral"), hops)
        return body

    def _verified_leaf(self, body: dict, ip: IPAddress, depth: int, hops: list[str]) -> Delegation:
        verdict = validate_chain(body.get("chain") or [], self.root_key, self.now())
        if not verdict.ok:
            raise ResolutionError(Failure.BAD_CHAIN, f"{hops[-1]} presented a chain that does not validate: "
                                  f"{verdict.explain()}", hops)
        leaf = verdict.leaf
        if ip not in leaf.prefix:
            raise ResolutionError(Failure.BAD_CHAIN, f"{hops[-1]} answered with {leaf.prefix}, "
                                  f"which does not contain {ip}", hops)
        if body["answer"] == "referral" and len(verdict.delegations) <= depth:
            raise ResolutionError(Failure.NO_PROGRESS, f"{hops[-1]} referred to a chain no deeper than "
                                  "the one that led to it", hops)
        return leaf

    def _deepest_referral(self, ip: IPAddress) -> _CachedReferral | None:
        now = self.monotonic()
        self._referrals = [r for r in self._referrals if r.expires > now]
        covering = [r for r in self._referrals if ip.version == r.prefix.version and ip in r.prefix]
        return max(covering, key=lambda r: r.prefix.prefixlen, default=None)

    def _remember(self, resolution: Resolution, body: dict) -> None:
        self._answers[resolution.ip] = (resolution, self.monotonic() + self._ttl(body))

    @staticmethod
    def _ttl(body: dict) -> int:
        ttl = body.get("ttl")
        return min(ttl, 86400) if isinstance(ttl, int) and ttl > 0 else 0
