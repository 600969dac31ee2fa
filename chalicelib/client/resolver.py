"""Finding the node responsible for an address: follow referrals from the root, verify every chain.

Like a DNS resolver: start at the root (or at the deepest cached referral covering the address), ask
`/v1/refer/{ip}`, and follow referral answers down until a node answers authoritative or none. Every
answer's chain is validated from the trust anchor, each hop must go deeper than the last, and a
referral back to a node already asked is a loop. A leaf's endpoint must be one the fetcher may reach
(https, a global address), so a node cannot point the client at someone else's service.

Answers are cached for their ttl, but never past the earliest not_after in their chain: a chain that
expires takes its cached referral with it. A cached referral that then leads to "none" or to an answer
that does not verify is dropped, and the address asked again from the root.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import StrEnum

from ..protocol.delegation import MAX_CHAIN_DEPTH, Delegation, validate_chain
from ..protocol.prefixes import IPAddress, IPNetwork, parse_ip
from .fetch import Fetcher, FetchError, json_object

RESOLUTION_TIMEOUT = 30.0   # seconds for one resolution, every hop included


class Failure(StrEnum):
    UNREACHABLE = "unreachable"      # a node did not answer over HTTP
    BAD_ANSWER = "bad_answer"        # an answer that is not a referral document
    BAD_CHAIN = "bad_chain"          # a chain that does not validate from the trust anchor
    LOOP = "loop"                    # a referral back to a node already asked
    TOO_DEEP = "too_deep"            # more hops than a chain may have links
    NO_PROGRESS = "no_progress"      # a referral that is not more specific than the last
    UNSAFE_ENDPOINT = "unsafe_endpoint"  # an endpoint that is not https or not on a global address


FETCH_FAILURES = {FetchError.UNREACHABLE: Failure.UNREACHABLE, FetchError.TOO_LARGE: Failure.BAD_ANSWER,
                  FetchError.UNSAFE_ENDPOINT: Failure.UNSAFE_ENDPOINT}


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
    """`http` decides which endpoints may be asked (dev mode or not) and bounds each request; `now` and
    `monotonic` are the clocks of chain validity and of the cache, `resolution_timeout` bounds a resolution."""

    def __init__(self, root_url: str, root_key: str, http: Fetcher | None = None,
                 now: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
                 monotonic: Callable[[], float] = time.monotonic, resolution_timeout: float = RESOLUTION_TIMEOUT):
        self.root_url = root_url.rstrip("/")
        self.root_key = root_key
        self.http = http or Fetcher()
        self.now = now
        self.monotonic = monotonic
        self.resolution_timeout = resolution_timeout
        self._referrals: list[_CachedReferral] = []
        self._answers: dict[str, tuple[Resolution, float]] = {}

    def resolve(self, ip_text: str) -> Resolution:
        ip = parse_ip(ip_text)
        cached = self._answers.get(str(ip))
        if cached and cached[1] > self.monotonic():
            return cached[0]
        deadline = time.monotonic() + self.resolution_timeout
        start = self._deepest_referral(ip)
        if start is not None:
            try:
                resolution = self._walk(ip, start.endpoint, start.depth, deadline)
            except ResolutionError as exc:
                if exc.failure is Failure.UNREACHABLE:
                    raise
                resolution = None
            if resolution is not None and resolution.owned:
                return resolution
            # it led to nobody or to an answer that does not verify: the space moved, ask the root again
            self._referrals = [referral for referral in self._referrals if referral is not start]
            self._answers.pop(str(ip), None)
        return self._walk(ip, self.root_url, 0, deadline)

    def forget(self, ip_text: str) -> None:
        """Drop what is cached for ip: a node said it no longer answers for it."""
        ip = parse_ip(ip_text)
        self._answers.pop(str(ip), None)
        self._referrals = [r for r in self._referrals if not (ip.version == r.prefix.version and ip in r.prefix)]

    def _walk(self, ip: IPAddress, url: str, depth: int, deadline: float) -> Resolution:
        hops: list[str] = []
        while True:
            if url in hops:
                raise ResolutionError(Failure.LOOP, f"referral loop back to {url}", hops)
            if len(hops) > MAX_CHAIN_DEPTH:
                raise ResolutionError(Failure.TOO_DEEP, f"more than {MAX_CHAIN_DEPTH} referrals", hops)
            hops.append(url)
            body = self._ask(url, ip, hops, deadline)
            if body["answer"] == "none":
                resolution = Resolution(str(ip), "none", tuple(hops), document=body)
                self._answers[resolution.ip] = (resolution, self._expiry(body, ()))
                return resolution
            chain = self._verified_chain(body, ip, depth, hops)
            leaf = chain[-1]
            if body["answer"] == "authoritative":
                resolution = Resolution(str(ip), "authoritative", tuple(hops), leaf.endpoint, str(leaf.prefix),
                                        tuple(body["chain"]), body)
                self._answers[resolution.ip] = (resolution, self._expiry(body, chain))
                return resolution
            depth = len(chain)
            self._referrals.append(_CachedReferral(leaf.prefix, leaf.endpoint, depth, self._expiry(body, chain)))
            url = leaf.endpoint

    def follow(self, ip_text: str, referral: dict) -> Resolution:
        """Continue from a referral a node handed back (a 421 on submit), verifying it like any other."""
        ip = parse_ip(ip_text)
        hops = ["(misdirected)"]
        if not isinstance(referral, dict) or referral.get("answer") != "referral":
            raise ResolutionError(Failure.BAD_ANSWER, "the node refused the report without a referral", hops)
        chain = self._verified_chain(referral, ip, 0, hops)
        return self._walk(ip, chain[-1].endpoint, len(chain), time.monotonic() + self.resolution_timeout)

    def _ask(self, url: str, ip: IPAddress, hops: list[str], deadline: float) -> dict:
        left = deadline - time.monotonic()
        if left <= 0:
            raise ResolutionError(Failure.UNREACHABLE, f"the nodes asked did not lead to an answer within "
                                  f"{self.resolution_timeout:g} s", hops)
        try:
            response = self.http.get(f"{url}/v1/refer/{ip}", timeout=min(self.http.timeout, left))
        except FetchError as exc:
            raise ResolutionError(FETCH_FAILURES[exc.kind], exc.message, hops) from None
        body = json_object(response)
        if body is None or body.get("answer") not in ("authoritative", "referral", "none"):
            error = (body or {}).get("error")
            message = error.get("message") if isinstance(error, dict) else None
            raise ResolutionError(Failure.BAD_ANSWER, f"{url} answered HTTP {response.status_code}"
                                  + (f": {message}" if message else " without a referral"), hops)
        return body

    def _verified_chain(self, body: dict, ip: IPAddress, depth: int, hops: list[str]) -> tuple[Delegation, ...]:
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
        try:
            self.http.check_endpoint(leaf.endpoint)
        except FetchError as exc:
            raise ResolutionError(Failure.UNSAFE_ENDPOINT, f"{exc.message} (named for {leaf.prefix} by {hops[-1]})",
                                  hops) from None
        return verdict.delegations

    def _deepest_referral(self, ip: IPAddress) -> _CachedReferral | None:
        now = self.monotonic()
        self._referrals = [r for r in self._referrals if r.expires > now]
        covering = [r for r in self._referrals if ip.version == r.prefix.version and ip in r.prefix]
        return max(covering, key=lambda r: r.prefix.prefixlen, default=None)

    def _expiry(self, body: dict, chain: tuple[Delegation, ...]) -> float:
        """When a cached answer ends: after its ttl (at most a day), and never after its chain expires."""
        ttl = body.get("ttl")
        seconds = min(ttl, 86400) if isinstance(ttl, int) and ttl > 0 else 0
        if chain:
            seconds = min(seconds, (min(link.not_after for link in chain) - self.now()).total_seconds())
        return self.monotonic() + seconds
