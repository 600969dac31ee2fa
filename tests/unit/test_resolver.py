"""The resolver's rules on a tree written out as canned answers: which endpoints it refuses to ask, and how long
it trusts what it cached. Nothing is contacted: the fetcher below answers from a dict."""
from __future__ import annotations

from datetime import timedelta

import httpx
import pytest

from chalicelib.client.fetch import Fetcher
from chalicelib.client.resolver import Failure, ResolutionError, Resolver
from chalicelib.protocol.keys import KeyPair
from tests.conftest import NOW, FixedClock, delegate

ROOT_URL = "https://root.example"
ROOT, ISP, OTHER = KeyPair.generate(), KeyPair.generate(), KeyPair.generate()


class CannedTree(Fetcher):
    """A fetcher outside dev mode whose nodes answer /v1/refer from `answers` (base URL → body); what was
    asked is in `asked`. Its endpoint rules are the real ones: only the transport is replaced."""

    def __init__(self, answers: dict[str, dict]):
        super().__init__()
        self.answers = answers
        self.asked: list[str] = []

    def request(self, method, url, **options) -> httpx.Response:
        self.check_endpoint(url)
        base = url.split("/v1/")[0]
        self.asked.append(base)
        return httpx.Response(200, json=self.answers[base])


class Clocks:
    """The chain clock and the cache's monotonic clock, moved together."""

    def __init__(self):
        self.wall = FixedClock(NOW)
        self.seconds = 1000.0

    def advance(self, delta: timedelta) -> None:
        self.wall.moment += delta
        self.seconds += delta.total_seconds()

    def resolver(self, tree: CannedTree) -> Resolver:
        return Resolver(ROOT_URL, ROOT.public, tree, now=self.wall.now, monotonic=lambda: self.seconds)


def referral(*links, ttl: int = 86400) -> dict:
    return {"answer": "referral", "chain": [link.document for link in links], "ttl": ttl}


def authoritative(*links, ttl: int = 86400) -> dict:
    return {"answer": "authoritative", "chain": [link.document for link in links], "ttl": ttl}


@pytest.mark.parametrize("endpoint", [
    "http://169.254.169.254/latest/meta-data",   # a cloud's metadata service
    "https://169.254.169.254",
    "https://10.0.0.7",                          # the reporter's own network
    "https://[fd00::7]",
    "https://[::ffff:192.168.1.1]",
    "http://reports.example.net",                # plain http
])
def test_a_referral_to_a_special_purpose_or_plain_http_endpoint_is_refused_and_never_asked(endpoint):
    isp = delegate(ROOT, "8.8.8.0/24", ISP, endpoint=endpoint)
    tree = CannedTree({ROOT_URL: referral(isp)})
    with pytest.raises(ResolutionError) as refused:
        Resolver(ROOT_URL, ROOT.public, tree).resolve("8.8.8.5")
    assert refused.value.failure is Failure.UNSAFE_ENDPOINT
    assert f"refused endpoint {endpoint}" in refused.value.message and "8.8.8.0/24" in refused.value.message
    assert tree.asked == [ROOT_URL]


def test_an_owner_named_by_an_authoritative_answer_is_checked_too():
    isp = delegate(ROOT, "8.8.8.0/24", ISP, endpoint="https://reports.example.net")
    owner = delegate(ISP, "8.8.8.16/28", OTHER, endpoint="http://169.254.169.254/latest/meta-data")
    tree = CannedTree({ROOT_URL: referral(isp), "https://reports.example.net": authoritative(isp, owner)})
    with pytest.raises(ResolutionError) as refused:
        Resolver(ROOT_URL, ROOT.public, tree).resolve("8.8.8.20")
    assert refused.value.failure is Failure.UNSAFE_ENDPOINT
    assert tree.asked == [ROOT_URL, "https://reports.example.net"]


def test_a_root_url_that_is_plain_http_is_refused_before_it_is_asked():
    tree = CannedTree({})
    with pytest.raises(ResolutionError) as refused:
        Resolver("http://root.example", ROOT.public, tree).resolve("8.8.8.5")
    assert refused.value.failure is Failure.UNSAFE_ENDPOINT and "it is not https" in refused.value.message
    assert tree.asked == []


def test_a_cached_answer_ends_when_its_chain_expires_whatever_its_ttl():
    clocks = Clocks()
    short = delegate(ROOT, "8.8.8.0/24", ISP, endpoint="https://isp.example", not_after=NOW + timedelta(minutes=5))
    tree = CannedTree({ROOT_URL: authoritative(short, ttl=86400)})
    resolver = clocks.resolver(tree)
    assert resolver.resolve("8.8.8.5").endpoint == "https://isp.example"
    clocks.advance(timedelta(minutes=4))
    resolver.resolve("8.8.8.5")
    assert tree.asked == [ROOT_URL]                  # within the chain's life: from the cache
    clocks.advance(timedelta(minutes=2))
    with pytest.raises(ResolutionError) as refused:  # past it: asked again, and the chain is refused
        resolver.resolve("8.8.8.5")
    assert refused.value.failure is Failure.BAD_CHAIN and "expired" in refused.value.message


def test_a_cached_referral_ends_when_its_chain_expires_and_the_new_holder_is_found():
    clocks = Clocks()
    old = delegate(ROOT, "8.8.8.0/24", ISP, endpoint="https://old.example", not_after=NOW + timedelta(minutes=5))
    tree = CannedTree({ROOT_URL: referral(old), "https://old.example": {"answer": "none", "ttl": 60}})
    resolver = clocks.resolver(tree)
    assert resolver.resolve("8.8.8.5").answer == "none"
    clocks.advance(timedelta(hours=2))
    new = delegate(ROOT, "8.8.8.0/24", OTHER, endpoint="https://new.example", serial=2)
    tree.answers.update({ROOT_URL: referral(new), "https://new.example": authoritative(new)})
    resolution = resolver.resolve("8.8.8.6")
    assert (resolution.answer, resolution.endpoint) == ("authoritative", "https://new.example")
    assert resolution.hops == (ROOT_URL, "https://new.example")


@pytest.mark.parametrize("stale_answer", [
    {"answer": "none", "ttl": 60},
    "expired chain",
], ids=["answers-none", "presents-an-expired-chain"])
def test_a_cached_referral_that_leads_nowhere_is_dropped_and_the_root_asked_again(stale_answer):
    """The holder's own delegation ended before the root's referral did: the root knows the new holder."""
    clocks = Clocks()
    old = delegate(ROOT, "8.8.8.0/24", ISP, endpoint="https://old.example")
    tree = CannedTree({ROOT_URL: referral(old), "https://old.example": authoritative(old)})
    resolver = clocks.resolver(tree)
    assert resolver.resolve("8.8.8.5").endpoint == "https://old.example"
    clocks.advance(timedelta(minutes=10))
    new = delegate(ROOT, "8.8.8.0/24", OTHER, endpoint="https://new.example", serial=2)
    if stale_answer == "expired chain":
        stale_answer = authoritative(delegate(ROOT, "8.8.8.0/24", ISP, endpoint="https://old.example",
                                              not_after=NOW + timedelta(minutes=1)))
    tree.answers.update({ROOT_URL: referral(new), "https://old.example": stale_answer,
                         "https://new.example": authoritative(new)})
    tree.asked.clear()
    resolution = resolver.resolve("8.8.8.6")
    assert resolution.endpoint == "https://new.example"
    assert tree.asked == ["https://old.example", ROOT_URL, "https://new.example"]
    assert resolver.resolve("8.8.8.7").hops == ("https://new.example",)   # the new referral is the one cached
