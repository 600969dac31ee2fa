"""The WSGI adapter: under a threaded waitress concurrent requests never see each other's bodies, its route
matcher answers as Chalice's, and each request gets a Lambda context of its own."""
from __future__ import annotations

import json
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
from hypothesis import example, given, settings
from hypothesis import strategies as st
from waitress import create_server

import app as node_app
from chalicelib.adapters.wsgi import ChaliceWSGI, ThreadSafeChalice
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


SEGMENTS = sorted({part for route in node_app.app.routes for part in route.split("/")}
                  | {"127.0.0.1", "x", "", "x;p=1", "x#f", "http:", "%3A%3A1", "a%2Fb"})


@settings(max_examples=500, deadline=None)
@example(segments=["", "", "v1", "canary", ""], slash=True, query="")  # "///v1/canary//": host "", path /v1/canary/
@example(segments=["", "v1", "refer", "127.0.0.1"], slash=False, query="")  # "//v1/refer/…": host "v1"
@example(segments=["v1", "refer", "x;p=1"], slash=False, query="?status=open")
@example(segments=["v1", "refer", "x#f"], slash=False, query="")
@given(segments=st.lists(st.sampled_from(SEGMENTS), max_size=6), slash=st.booleans(),
       query=st.sampled_from(["", "?format=nft&x=", "?status=open"]))
def test_split_route_matcher_answers_as_chalices_own_matcher(segments, slash, query):
    """Paths built from the routes' own parts (captures, literals, empty parts, a trailing slash, a leading
    "//", parameters, a fragment, a scheme, percent-escapes): the matcher that skips routes of other lengths
    picks the same route and captures as Chalice's, the captures left encoded as API Gateway leaves them."""
    from chalice.local import RouteMatcher

    from chalicelib.adapters.wsgi import SplitRouteMatcher

    url = "/" + "/".join(segments) + ("/" if slash else "") + query
    routes = list(node_app.app.routes)

    def match(matcher):
        try:
            found = matcher.match_route(url)
        except ValueError:
            return None
        return found.route, found.captured, found.query_params

    assert match(SplitRouteMatcher(routes)) == match(RouteMatcher(routes))


def test_each_request_gets_its_own_uuid_shaped_request_id_and_a_running_clock():
    app = ThreadSafeChalice(app_name="contexts")

    @app.route("/context")
    def context():
        return {"id": app.lambda_context.aws_request_id,
                "remaining_ms": app.lambda_context.get_remaining_time_in_millis(),
                "function": app.lambda_context.function_name}

    gateway = ChaliceWSGI(app)  # Lambda timeout 60 s
    time.sleep(1)  # each request's clock starts with it, not with the gateway
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/context", "REMOTE_ADDR": "127.0.0.1"}
    seen = [gateway.handle(dict(environ)) for _ in range(3)]
    answers = [json.loads(body) for status, _, body in seen if status == 200]
    assert len(answers) == 3
    ids = [answer["id"] for answer in answers]
    assert len(set(ids)) == 3
    assert all(re.fullmatch("[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", i) for i in ids)
    assert all(59_500 < answer["remaining_ms"] <= 60_000 for answer in answers)
    assert {answer["function"] for answer in answers} == {"api_handler"}
