"""The operators' case routes: reading a case, resolving it, and what a resolution lifts."""
from __future__ import annotations

from datetime import timedelta

import pytest

from chalicelib.core.ports import Block
from tests.api.conftest import make_api
from tests.api.test_intake import envelope, holding
from tests.conftest import NOW


@pytest.fixture
def isp(tmp_path, root_key):
    """A node holding 127.0.0.0/16, where envelope()'s reports land."""
    api = make_api(tmp_path, dev_mode=True, trust_anchor=root_key.public)
    holding(api, root_key)
    with api.client:
        yield api


def blocklist(api) -> list[str]:
    response = api.client.http.get("/v1/blocklist", headers={"Authorization": f"Bearer {api.token('appliance')}"})
    return response.body.decode().split()


def test_resolving_a_case_lifts_its_block_and_only_its_own(isp):
    isp.call("POST", "/v1/reports", envelope())
    isp.call("POST", "/v1/reports", envelope(category="spam"))
    for category in ("open-proxy", "spam"):   # as a policy's `block:` action would
        isp.node.verifications.block(Block("127.0.0.9", category, NOW + timedelta(days=7), f"{category} confirmed"))
    assert isp.call("POST", "/v1/cases/127.0.0.9/open-proxy/resolve", token=isp.token("reader"))[0] == 200
    assert [b.category for b in isp.node.verifications.blocklist(NOW)] == ["spam"]
    assert blocklist(isp) == ["127.0.0.9"]
    assert isp.call("POST", "/v1/cases/127.0.0.9/spam/resolve", token=isp.token("reader"))[0] == 200
    assert blocklist(isp) == []


def test_resolving_in_an_unknown_category_is_400_bad_category(isp):
    isp.call("POST", "/v1/reports", envelope())
    status, body = isp.call("POST", "/v1/cases/127.0.0.9/no-such-thing/resolve", token=isp.token("reader"))
    assert (status, body["error"]["code"]) == (400, "bad_category")
    assert "no-such-thing" in body["error"]["message"]
    assert isp.node.reports.get_case("127.0.0.9", "open-proxy").status == "received"


def test_resolving_a_known_category_without_a_case_is_404(isp):
    status, body = isp.call("POST", "/v1/cases/127.0.0.9/spam/resolve", token=isp.token("reader"))
    assert (status, body["error"]["code"]) == (404, "not_found")


def test_a_case_address_that_is_no_address_is_400_saying_so_not_that_it_is_scoped(isp):
    status, body = isp.call("GET", "/v1/cases/%zz", token=isp.token("reader"))
    assert (status, body["error"]["code"]) == (400, "bad_address")
    assert body["error"]["message"] == "'%zz' is not an IPv4 or IPv6 address"
