"""The referral and delegation routes of DESIGN.md §3, their tokens and their JSON errors."""
from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import app as node_app
from chalicelib.openapi import openapi_document
from chalicelib.protocol.keys import KeyPair
from tests.api.conftest import make_api
from tests.conftest import delegate

CHILD = KeyPair.from_seed(b"\x07" * 32)


def grant_body(prefix="127.0.1.0/24", **overrides):
    return {"prefix": prefix, "holder": CHILD.public, "endpoint": "http://127.0.0.2:8080", **overrides}


def test_node_info_names_its_key_and_version(api):
    status, body = api.call("GET", "/v1/node")
    assert status == 200
    assert body["key"] == api.node.key.public and body["version"] == "v1" and body["root"] is True


def test_refer_outside_the_nodes_space_is_404_none(api):
    assert api.call("GET", "/v1/refer/127.0.0.1") == (404, {"answer": "none", "ip": "127.0.0.1", "ttl": 300})


def test_refer_to_a_granted_child_is_a_referral_with_chain_and_ttl(api):
    status, granted = api.call("POST", "/v1/delegations", grant_body(), token=api.token("admin"))
    assert status == 201
    status, body = api.call("GET", "/v1/refer/127.0.1.9")
    assert status == 200
    assert body["answer"] == "referral" and body["endpoint"] == "http://127.0.0.2:8080"
    assert body["prefix"] == "127.0.1.0/24" and body["ttl"] == 3600
    assert body["chain"] == [granted["delegation"]]


def test_refer_with_a_bad_address_is_400(api):
    status, body = api.call("GET", "/v1/refer/not-an-ip")
    assert status == 400 and body["error"]["code"] == "bad_address"


def test_production_node_refuses_special_purpose_addresses_with_422(tmp_path):
    api = make_api(tmp_path, dev_mode=False)
    status, body = api.call("GET", "/v1/refer/127.0.0.1")
    assert status == 422 and "loopback" in body["error"]["message"]


def test_granting_needs_an_admin_token(api):
    assert api.call("POST", "/v1/delegations", grant_body())[0] == 401
    assert api.call("POST", "/v1/delegations", grant_body(), token="nim_admin_guess")[0] == 401
    status, body = api.call("POST", "/v1/delegations", grant_body(), token=api.token("reader"))
    assert status == 403 and "needs admin" in body["error"]["message"]
    assert api.call("GET", "/v1/refer/127.0.1.9")[0] == 404


@pytest.mark.parametrize("authorization", [None, "Bearer", "Basic YWRtaW46YWRtaW4=", "Bearer nim_admin_guess"])
def test_a_401_names_the_bearer_scheme(api, authorization):
    headers = {"Authorization": authorization} if authorization else {}
    response = api.client.http.get("/v1/delegations", headers=headers)
    assert response.status_code == 401 and response.headers["WWW-Authenticate"] == 'Bearer realm="netimmune"'


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])
def test_the_token_scheme_is_case_insensitive(api, scheme):
    response = api.client.http.get("/v1/delegations", headers={"Authorization": f"{scheme} {api.token('admin')}"})
    assert response.status_code == 200


def test_listing_cases_by_an_unknown_status_is_400(api):
    status, body = api.call("GET", "/v1/cases?status=bogus", token=api.token("reader"))
    assert (status, body["error"]["code"]) == (400, "bad_status")


@pytest.mark.parametrize("body,code", [
    (grant_body(prefix="127.0.1.1/24"), "bad_prefix"),
    (grant_body(holder="ed25519:short"), "bad_request"),
    (grant_body(endpoint="ftp://127.0.0.2"), "bad_request"),
    (grant_body(days=0), "bad_request"),
    (grant_body(prefix=None), "bad_prefix"),
    (["not", "an", "object"], "bad_request"),
])
def test_malformed_grants_are_400_and_store_nothing(api, body, code):
    status, answer = api.call("POST", "/v1/delegations", body, token=api.token("admin"))
    assert (status, answer["error"]["code"]) == (400, code)
    assert api.call("GET", "/v1/delegations", token=api.token("admin"))[1]["granted"] == []


def test_invalid_json_body_is_400(api):
    status, body = api.call("POST", "/v1/delegations", raw=b"{nope", token=api.token("admin"))
    assert (status, body["error"]["code"]) == (400, "bad_json")


def test_oversized_body_is_413(api):
    status, _ = api.call("POST", "/v1/delegations", raw=b" " * (node_app.MAX_JSON_BODY + 1),
                         token=api.token("admin"))
    assert status == 413


def test_a_non_root_node_grants_only_inside_space_it_holds(tmp_path, root_key):
    api = make_api(tmp_path, dev_mode=True, trust_anchor=root_key.public)
    admin = api.token("admin")
    status, body = api.call("POST", "/v1/delegations", grant_body(), token=admin)
    assert (status, body["error"]["code"]) == (403, "not_held")
    held = delegate(root_key, "127.0.0.0/16", api.node.key)
    assert api.call("PUT", "/v1/delegations/held", {"chain": [held.document]}, token=admin)[0] == 200
    status, granted = api.call("POST", "/v1/delegations", grant_body(), token=admin)
    assert status == 201 and granted["chain"][0] == held.document
    assert api.call("GET", "/v1/refer/127.0.9.9")[1]["answer"] == "authoritative"
    assert api.call("POST", "/v1/delegations", grant_body(prefix="127.1.0.0/24"), token=admin)[0] == 403


def test_installing_a_chain_for_another_key_is_forbidden(tmp_path, root_key):
    api = make_api(tmp_path, dev_mode=True, trust_anchor=root_key.public)
    chain = [delegate(root_key, "127.0.0.0/16", CHILD).document]
    status, body = api.call("PUT", "/v1/delegations/held", chain, token=api.token("admin"))
    assert (status, body["error"]["code"]) == (403, "not_holder")


def test_installing_a_chain_from_another_root_is_422(tmp_path, root_key):
    api = make_api(tmp_path, dev_mode=True, trust_anchor=root_key.public)
    chain = [delegate(KeyPair.generate(), "127.0.0.0/16", api.node.key).document]
    status, body = api.call("PUT", "/v1/delegations/held", chain, token=api.token("admin"))
    assert (status, body["error"]["code"]) == (422, "chain_untrusted_root")


def test_revoking_stops_the_referral(api):
    admin = api.token("admin")
    api.call("POST", "/v1/delegations", grant_body(), token=admin)
    assert api.call("DELETE", "/v1/delegations/127.0.1.0/24", token=admin) == (200, {"revoked": "127.0.1.0/24"})
    assert api.call("GET", "/v1/refer/127.0.1.9")[0] == 404
    assert api.call("DELETE", "/v1/delegations/127.0.1.0/24", token=admin)[0] == 404


def test_regranting_raises_the_serial(api):
    admin = api.token("admin")
    first = api.call("POST", "/v1/delegations", grant_body(), token=admin)[1]["delegation"]
    second = api.call("POST", "/v1/delegations", grant_body(), token=admin)[1]["delegation"]
    assert second["delegation"]["serial"] == first["delegation"]["serial"] + 1


def through_wsgi_adapter(raw_uri: str, **headers: str) -> tuple[int, dict, bytes]:
    import io

    from chalicelib.adapters.wsgi import ChaliceWSGI
    environ = {"REQUEST_METHOD": "GET", "RAW_URI": raw_uri, "wsgi.input": io.BytesIO(),
               **{f"HTTP_{name.upper()}": value for name, value in headers.items()}}
    return ChaliceWSGI(node_app.app).handle(environ)


@pytest.mark.parametrize("authorization", [None, "Bearer nim_admin_secret", "Bearer nïm"])
def test_unknown_route_is_a_json_404_through_the_wsgi_adapter(api, authorization):
    """Whatever the headers: Chalice's gateway would answer 403 and echo an Authorization header back."""
    status, _, body = through_wsgi_adapter("/v2/nothing", **({"authorization": authorization} if authorization else {}))
    assert status == 404 and json.loads(body)["error"]["code"] == "not_found"
    assert b"secret" not in body


def test_percent_encoded_address_in_a_path_is_the_address(api):
    """/v1/refer/%3A%3A1 asks about ::1, locally and behind API Gateway, whose REST API hands path parameters
    over still percent-encoded (as Chalice's test client does here): the app decodes them, once."""
    assert through_wsgi_adapter("/v1/refer/%3A%3A1") == through_wsgi_adapter("/v1/refer/::1")
    assert json.loads(through_wsgi_adapter("/v1/refer/%3A%3A1")[2])["ip"] == "::1"
    assert api.call("GET", "/v1/refer/%3A%3A1") == api.call("GET", "/v1/refer/::1")
    assert api.call("GET", "/v1/refer/%253A%253A1")[1]["error"]["code"] == "bad_address"   # "%3A%3A1": not ::1


@pytest.mark.parametrize("method,path,content_type,status,code", [
    ("DELETE", "/v1/node", "application/json", 405, "method_not_allowed"),
    ("POST", "/v1/reports", "text/plain", 415, "unsupported_media_type"),
    ("POST", "/v1/reports/batch", "text/plain", 415, "unsupported_media_type"),
])
def test_chalices_own_refusals_come_in_the_json_error_shape(api, method, path, content_type, status, code):
    response = api.client.http.request(method, path, headers={"Content-Type": content_type}, body=b"{}")
    assert response.status_code == status
    assert response.headers["Content-Type"] == "application/json"
    assert json.loads(response.body)["error"]["code"] == code


def test_openapi_describes_exactly_the_routes_the_app_has(api):
    status, document = api.call("GET", "/openapi.json")
    assert status == 200 and document["openapi"].startswith("3.1")
    described = {(path, method.upper()) for path, ops in document["paths"].items() for method in ops}
    routed = {(path, method) for path, methods in node_app.app.routes.items() for method in methods}
    assert described == routed
    assert document == openapi_document(document["info"]["version"])


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from(["/v1/delegations", "/v1/delegations/held"]),
       body=st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                         lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
                             st.sampled_from(["prefix", "holder", "endpoint", "days", "chain", "x"]), inner,
                             max_size=4), max_leaves=8))
def test_no_body_ever_causes_a_server_error(api, path, body):
    method = "POST" if path == "/v1/delegations" else "PUT"
    status, answer = api.call(method, path, body, token=api.token("admin"))
    assert 400 <= status < 500 and "error" in answer


def test_canary_records_a_hit_only_for_a_nonce_this_node_issued(api):
    from datetime import timedelta

    from tests.conftest import NOW

    api.node.verifications.register_canary("n0nce", "127.0.0.5", NOW + timedelta(minutes=10))
    response = api.client.http.get("/v1/canary/n0nce")
    assert response.status_code == 200 and b"n0nce" in response.body
    assert api.node.verifications.canary_hit("n0nce")
    status, body = api.call("GET", "/v1/canary/never-issued")
    assert status == 404 and body["error"]["code"] == "not_found"
