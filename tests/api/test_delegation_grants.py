"""What `POST /v1/delegations` grants: endpoints reporters will use, and space no other child holds."""
from __future__ import annotations

import pytest

from chalicelib.client.fetch import FetchError, Fetcher
from chalicelib.protocol.keys import KeyPair
from tests.api.conftest import make_api

CHILD, OTHER = KeyPair.from_seed(b"\x07" * 32), KeyPair.from_seed(b"\x08" * 32)


def grant(api, prefix="127.0.1.0/24", holder=CHILD, endpoint="http://127.0.0.2:8080", **extra):
    body = {"prefix": prefix, "holder": holder.public, "endpoint": endpoint, **extra}
    return api.call("POST", "/v1/delegations", body, token=api.token("admin"))


def granted(api) -> list[tuple[str, str]]:
    listing = api.call("GET", "/v1/delegations", token=api.token("admin"))[1]["granted"]
    return [(item["prefix"], item["holder"]) for item in listing]


@pytest.fixture
def production(tmp_path):
    made = make_api(tmp_path, dev_mode=False)
    with made.client:
        yield made


REFUSED_BY_REPORTERS = [   # never contacted: a grant only signs the text, and Fetcher.check_endpoint reads it
    "http://reports.example.net",          # plain http
    "http://8.8.8.8",                      # never contacted
    "https://127.0.0.1",                   # special-purpose addresses
    "https://[::1]:8443",
    "https://10.0.0.7",                    # never contacted
    "https://169.254.169.254/latest/meta-data",
    "https://[::ffff:192.168.1.1]",        # never contacted
    "https://192.0.2.10",
]


@pytest.mark.parametrize("endpoint", REFUSED_BY_REPORTERS)
def test_a_production_node_refuses_to_grant_an_endpoint_reporters_refuse(production, endpoint):
    status, body = grant(production, "8.8.8.0/24", endpoint=endpoint)
    assert (status, body["error"]["code"]) == (422, "unsafe_endpoint")
    assert endpoint in body["error"]["message"] and "dev" in body["error"]["message"]
    assert granted(production) == []


@pytest.mark.parametrize("endpoint", ["https://reports.example.net", "https://8.8.8.8:8443/netimmune",  # not contacted
                                      "https://[2001:4860:4860::8888]"])
def test_a_production_node_grants_https_endpoints_on_names_and_global_addresses(production, endpoint):
    status, body = grant(production, "8.8.8.0/24", endpoint=endpoint)
    assert status == 201 and body["delegation"]["delegation"]["endpoint"] == endpoint


@pytest.mark.parametrize("endpoint", REFUSED_BY_REPORTERS)
def test_a_dev_mode_node_grants_plain_http_and_special_purpose_endpoints(api, endpoint):
    assert grant(api, endpoint=endpoint)[0] == 201


@pytest.mark.parametrize("dev_mode", [False, True])
@pytest.mark.parametrize("endpoint", [
    "https://reports.example.net", "http://reports.example.net", "https://8.8.8.8",   # never contacted
    "https://127.0.0.1:8443",
    "http://127.0.0.1:8080", "https://[::1]", "https://[2001:db8::1]", "https://localhost",
    "http://[::ffff:10.0.0.1]:80/x",   # never contacted: check_endpoint reads text only
])
def test_a_node_grants_exactly_the_endpoints_its_reporters_accept(tmp_path, dev_mode, endpoint):
    """One rule for both sides; a host name passes both here, and the reporter judges its addresses when
    it resolves it."""
    api = make_api(tmp_path, dev_mode=dev_mode)
    try:
        Fetcher(allow_local=dev_mode).check_endpoint(endpoint)
        reporters_accept = True
    except FetchError:
        reporters_accept = False
    assert (grant(api, "8.8.8.0/24", endpoint=endpoint)[0] == 201) == reporters_accept


@pytest.mark.parametrize("dev_mode", [False, True])
@pytest.mark.parametrize("endpoint", [
    "https://user:secret@reports.example.net", "https://reports.example.net?x=1", "https://reports.example.net#top",
    "https://", "https://[::1", "https://reports.example.net:99999", "https://127.1",
])
def test_a_malformed_endpoint_is_400_in_either_mode(tmp_path, dev_mode, endpoint):
    api = make_api(tmp_path, dev_mode=dev_mode)
    status, body = grant(api, "8.8.8.0/24", endpoint=endpoint)
    assert (status, body["error"]["code"]) == (400, "bad_request")
    assert granted(api) == []


def test_a_grant_inside_another_holders_grant_is_refused_naming_it(api):
    assert grant(api, "127.0.1.0/24")[0] == 201
    status, body = grant(api, "127.0.1.0/25", holder=OTHER, endpoint="http://127.0.0.1:1")
    assert (status, body["error"]["code"]) == (409, "granted_elsewhere")
    assert body["error"]["message"].startswith(
        f"127.0.1.0/25 lies inside 127.0.1.0/24, granted to {CHILD.public}; revoke that first")
    assert api.call("GET", "/v1/refer/127.0.1.9")[1]["holder"] == CHILD.public
    assert granted(api) == [("127.0.1.0/24", CHILD.public)]


def test_a_grant_containing_another_holders_grant_is_refused_naming_it(api):
    """The wider holder's chain would prove the inner space too, so two valid chains would name two owners."""
    grant(api, "127.0.1.0/24")
    grant(api, "127.0.3.0/24", holder=KeyPair.from_seed(b"\x09" * 32))
    status, body = grant(api, "127.0.0.0/16", holder=OTHER)
    assert (status, body["error"]["code"]) == (409, "granted_elsewhere")
    assert body["error"]["message"].startswith(
        f"127.0.0.0/16 contains 127.0.1.0/24, granted to {CHILD.public} (and 1 more grant); revoke")
    assert len(granted(api)) == 2


def test_the_same_prefix_is_not_granted_again_to_another_holder(api):
    grant(api, "127.0.1.0/24")
    status, body = grant(api, "127.0.1.0/24", holder=OTHER)
    assert (status, body["error"]["code"]) == (409, "granted_elsewhere")
    assert f"127.0.1.0/24 is granted to {CHILD.public}; revoke that first" in body["error"]["message"]
    assert granted(api) == [("127.0.1.0/24", CHILD.public)]


def test_granting_the_same_prefix_to_its_holder_renews_it_with_a_new_endpoint(api):
    first = grant(api, "127.0.1.0/24")[1]["delegation"]["delegation"]
    status, body = grant(api, "127.0.1.0/24", endpoint="http://127.0.0.3:8080", days=30)
    renewed = body["delegation"]["delegation"]
    assert status == 201 and renewed["serial"] == first["serial"] + 1
    assert api.call("GET", "/v1/refer/127.0.1.9")[1]["endpoint"] == "http://127.0.0.3:8080"
    assert granted(api) == [("127.0.1.0/24", CHILD.public)]


def test_a_holder_may_be_granted_space_around_or_inside_its_own_grant(api):
    """No address changes hands, so widening or narrowing a child's space needs no revoke first."""
    grant(api, "127.0.1.0/24")
    assert grant(api, "127.0.0.0/16")[0] == 201
    assert grant(api, "127.0.1.128/25")[0] == 201
    assert {holder for _, holder in granted(api)} == {CHILD.public}


def test_revoked_space_may_be_granted_to_another_holder(api):
    grant(api, "127.0.1.0/24")
    api.call("DELETE", "/v1/delegations/127.0.1.0/24", token=api.token("admin"))
    assert grant(api, "127.0.1.0/25", holder=OTHER)[0] == 201
    assert api.call("GET", "/v1/refer/127.0.1.9")[1]["holder"] == OTHER.public


def test_disjoint_space_goes_to_different_holders(api):
    grant(api, "127.0.1.0/24")
    assert grant(api, "127.0.2.0/24", holder=OTHER)[0] == 201
    assert grant(api, "::1/128", holder=OTHER)[0] == 201
    assert grant(api, "127.0.0.0/24", holder=OTHER)[0] == 201


def test_a_grant_stored_before_the_plain_endpoint_rule_is_still_listed_and_does_not_block_new_grants(api):
    """A release before the rule signed http://127.1:8080 as it was given: the node must still list it (to revoke
    it) and grant elsewhere, not answer 500."""
    from chalicelib.core.ports import Role
    from chalicelib.protocol.delegation import parse_delegation
    from chalicelib.protocol.signing import sign_object

    body = {"prefix": "127.0.3.0/24", "holder": CHILD.public, "endpoint": "http://127.1:8080",
            "issuer": api.node.key.public, "serial": 1, "not_before": "2026-01-01T00:00:00Z",
            "not_after": "2036-01-01T00:00:00Z"}
    api.node.delegations.save_delegations(
        Role.GRANTED, [parse_delegation({"delegation": body, "signature": sign_object(body, api.node.key)})])
    assert ("127.0.3.0/24", CHILD.public) in granted(api)
    assert grant(api, "127.0.4.0/24")[0] == 201


def test_two_grants_of_overlapping_space_at_once_cannot_both_pass_on_sqlite(api):
    """Each grant checks for overlaps and then saves: the second must not check between the first's check and
    its save. A barrier holds the first grant after its check; the second may reach its check only after it."""
    import threading

    from chalicelib.core.delegations import grant as grant_space
    from chalicelib.core.errors import Conflict

    store, checked = api.node.delegations, threading.Barrier(2, timeout=1)
    original = store.overlapping_grants

    def check_then_wait(prefix):
        found = original(prefix)
        try:
            checked.wait()   # both threads here at once: both checked before either saved
        except threading.BrokenBarrierError:
            pass
        return found

    store.overlapping_grants = check_then_wait
    outcomes: list[str] = []

    def attempt(prefix, holder):
        try:
            grant_space(api.node, prefix, holder.public, "http://127.0.0.2:8080")
            outcomes.append("granted")
        except Conflict:
            outcomes.append("refused")

    try:
        threads = [threading.Thread(target=attempt, args=args)
                   for args in (("127.0.1.0/24", CHILD), ("127.0.1.0/25", OTHER))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    finally:
        del store.overlapping_grants
    assert sorted(outcomes) == ["granted", "refused"]
