"""The WSGI adapter under a threaded waitress: concurrent requests never see each other's bodies."""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
from waitress import create_server

import app as node_app
from chalicelib.adapters.wsgi import ChaliceWSGI
from chalicelib.protocol.keys import KeyPair
from chalicelib.settings import Settings
from chalicelib.wiring import build_node


def test_concurrent_posts_and_gets_each_get_their_own_request(tmp_path):
    KeyPair.generate().save(tmp_path / "n.key")
    node_app.current.set(build_node(Settings(db_path=tmp_path / "n.db", dev_mode=True, trust_peer_header=True,
                                             client_rate_per_minute=100000)))
    server = create_server(ChaliceWSGI(node_app.app), host="127.0.0.1", port=0, threads=8)
    threading.Thread(target=server.run, daemon=True).start()
    url = f"http://127.0.0.1:{server.effective_port}"
    try:
        def call(index: int) -> bool:
            """Even indexes read a referral for their own address; odd ones post a (badly signed) report."""
            if index % 2:
                answer = httpx.post(f"{url}/v1/reports", json={"report": {"n": index}, "signature": {}}, timeout=10)
                return answer.json()["error"]["code"] == "bad_signature"   # a crossed GET would be bad_json
            ip = f"127.0.{index % 250}.{index // 250 + 1}"
            return httpx.get(f"{url}/v1/refer/{ip}", timeout=10).json()["ip"] == ip

        with ThreadPoolExecutor(16) as pool:
            assert all(pool.map(call, range(400)))
    finally:
        server.close()


def test_split_route_matcher_answers_as_chalices_own_matcher():
    from chalice.local import RouteMatcher

    from chalicelib.adapters.wsgi import SplitRouteMatcher

    routes = list(node_app.app.routes)
    ours, chalices = SplitRouteMatcher(routes), RouteMatcher(routes)
    for url in ["/v1/refer/127.0.0.1", "/v1/refer/2001:db8::1", "/v1/delegations/held", "/v1/delegations",
                "/v1/delegations/127.0.1.0/24", "/v1/cases/127.0.0.1/spam/resolve", "/v1/blocklist?format=nft&x=",
                "/v1/reports/batch", "/v1/reports/abc/", "/openapi.json", "/"]:
        try:
            expected = chalices.match_route(url)
        except ValueError:
            expected = None
        try:
            got = ours.match_route(url)
        except ValueError:
            got = None
        assert (got and (got.route, got.captured, got.query_params)) == (
            expected and (expected.route, expected.captured, expected.query_params)), url
