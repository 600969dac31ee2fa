"""The form of a delegation's endpoint: what a node signs is one URL every parser reads the same way; what it
receives or stored before need only be DESIGN's http(s) URL with a host."""
from __future__ import annotations

import pytest

from chalicelib.protocol.delegation import (ChainError, MalformedDelegation, parse_delegation, plain_endpoint,
                                           validate_chain)
from chalicelib.protocol.signing import sign_object
from tests.conftest import NOW, delegate

MALFORMED = [
    "ftp://reports.example.net",                   # not http(s)
    "https://",                                    # no host
    "https:///v1",
    "https://:443",
    "https://user:secret@reports.example.net",     # credentials, sent to whoever the endpoint names
    "https://reports.example.net@",
    "https://reports.example.net?x=1",             # a query or fragment breaks `endpoint + /v1/...`
    "https://reports.example.net?",
    "https://reports.example.net/#top",
    "https://[::1",                                # not a URL at all
    "https://[::1]x",
    "https://reports.example.net:99999",           # no such port
    "https://reports.example.net:0",
    "https://reports.example.net\\@127.0.0.1",     # parsers disagree on the host
    "https://8.8.8.8\\.example.net",   # never contacted
    "https://reports.example.net\t",
    "https://exa mple.net",
    "https://r\u00e9ports.example.net",            # an international name goes in its xn-- form
    "https://127.1",                               # IPv4 in a spelling resolvers accept but an address check does not
    "https://2130706433",
    "https://0x7f000001",
    "https://0177.0.0.1",
    "https://127.0.0.1.",
    "https://[fe80::1%25eth0]",                    # a zone means something on one machine only
]


@pytest.mark.parametrize("endpoint", MALFORMED)
def test_a_node_signs_or_serves_at_no_endpoint_but_a_plain_one(endpoint):
    with pytest.raises(MalformedDelegation):
        plain_endpoint(endpoint)


@pytest.mark.parametrize("endpoint", ["https://[::1", "ftp://reports.example.net",
                                      "https://reports.example.net?x=1"])
def test_a_received_link_whose_endpoint_is_no_url_is_malformed_not_a_crash(root_key, isp_key, endpoint):
    body = {**delegate(root_key, "8.8.8.0/24", isp_key).document["delegation"], "endpoint": endpoint}
    verdict = validate_chain([{"delegation": body, "signature": sign_object(body, root_key)}], root_key.public, NOW)
    assert (verdict.error, verdict.index) == (ChainError.MALFORMED, 0)


@pytest.mark.parametrize("endpoint,kept", [
    ("https://reports.example.net/", "https://reports.example.net"),
    ("https://REPORTS.example.net:8443/netimmune", "https://REPORTS.example.net:8443/netimmune"),
    ("https://xn--rports-bva.example.net", "https://xn--rports-bva.example.net"),
    ("https://8.8.8.8", "https://8.8.8.8"),   # never contacted
    ("https://[2001:4860:4860::8888]:443/", "https://[2001:4860:4860::8888]:443"),
    ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),     # form only: whether reporters go there is not asked here
    ("https://node-7.reports.example.net/a@b", "https://node-7.reports.example.net/a@b"),
    ("https://reports.example.net/n\u00f6de\\x", "https://reports.example.net/n\u00f6de\\x"),  # a path is only a path
])
def test_a_well_formed_endpoint_is_kept_without_its_trailing_slash(endpoint, kept):
    assert plain_endpoint(endpoint) == kept


@pytest.mark.parametrize("endpoint", ["https://r\u00e9ports.example.net", "http://127.1:8080",
                                      "https://reports.example.net:99999"])
def test_a_link_another_node_signed_or_an_earlier_release_stored_is_read_as_design_allows(root_key, isp_key,
                                                                                           endpoint):
    """Stricter than DESIGN only in what this node signs: another implementation's chain, or a grant stored
    before the plain form, still parses (a client judges the resolved addresses before it connects)."""
    body = {**delegate(root_key, "8.8.8.0/24", isp_key).document["delegation"], "endpoint": endpoint}
    assert parse_delegation({"delegation": body, "signature": sign_object(body, root_key)}).endpoint == endpoint
