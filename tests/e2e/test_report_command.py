"""`report` against the real root → ISP → customer tree, as a person or a script would run it."""
from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import httpx
import pytest

SAMPLE_LOG = b"""1732600000.123 200 127.0.1.9 TCP_TUNNEL/200 4521 CONNECT mail.example.org:25 - HIER_DIRECT
1732600003.456 200 127.0.1.9 TCP_MISS/200 1043 GET http://example.com/ - HIER_DIRECT
"""


def run_report(args, env, stdin: bytes | None = b""):
    return subprocess.run([sys.executable, "-m", "chalicelib.cli.report", *args], input=stdin,
                          capture_output=True, env=env, timeout=60)


@pytest.fixture(scope="module")
def reporter_env(tree, tmp_path_factory):
    folder = tmp_path_factory.mktemp("reporter")
    env = {**os.environ, "NETIMMUNE_CONFIG_DIR": str(folder)}
    env.pop("NETIMMUNE_ROOT_URL", None)
    env.pop("NETIMMUNE_ROOT_KEY", None)
    result = run_report(["init", "--root-url", tree.root.url, "--root-key", tree.anchor, "--dev",
                         "--org", "Example CERT", "--contact", "cert@example.net", "--domain", "example.net"], env)
    assert result.returncode == 0, result.stderr
    return env


def case_once_policy_ran(node, ip: str, timeout: float = 20.0) -> dict:
    """The case as an operator reads it once the node's worker has run policy on it: intake only stores the
    report and queues that job, so right after the answer the case may still read `received`."""
    reader = node.token("reader")
    deadline = time.monotonic() + timeout
    while True:
        case = httpx.get(f"{node.url}/v1/cases/{ip}", headers={"Authorization": f"Bearer {reader}"}).json()["cases"][0]
        if case["status"] != "received" or time.monotonic() > deadline:
            return case
        time.sleep(0.05)


def test_report_lands_at_the_customer_and_the_case_shows_the_evidence(tree, reporter_env):
    result = run_report(["--open-proxy", "127.0.1.9", "--port", "3128", "--json"], reporter_env, SAMPLE_LOG)
    assert result.returncode == 0, result.stderr
    sent = json.loads(result.stdout)
    assert sent["endpoint"] == tree.customer.url and sent["status"] == 202
    case = case_once_policy_ran(tree.customer, "127.0.1.9")
    # the default policy scans at once; nothing listens on 127.0.1.9, so the scan may already have refuted it
    assert case["category"] == "open-proxy" and case["status"] in ("verifying", "refuted")
    evidence = case["evidence_reports"][0]["report"]["evidence"][0]
    assert evidence["description"] == "standard input"
    assert base64.b64decode(evidence["payload"]) == SAMPLE_LOG


def test_report_status_asks_the_node_it_went_to(tree, reporter_env):
    sent = json.loads(run_report(["--spam", "127.0.2.7", "--json"], reporter_env).stdout)
    assert sent["endpoint"] == tree.isp.url
    result = run_report(["status", sent["report_id"]], reporter_env)
    assert result.returncode == 0, result.stderr
    assert b"127.0.2.7 (spam) is received" in result.stdout


def test_report_for_unowned_space_without_an_abuse_contact_says_so_and_exits_3(tree, reporter_env):
    result = run_report(["--ddos", "::1"], reporter_env)
    assert result.returncode == 3
    assert b"::1 is not on netimmune, and its registry lists no abuse contact" in result.stderr


def test_report_for_unowned_space_goes_to_its_rdap_abuse_contact_as_an_arf_email(tree, reporter_env):
    from email import message_from_bytes, policy

    from tests.integration.conftest import serve_http
    from tests.integration.test_rdap import RecordedRdap

    with serve_http(RecordedRdap) as rdap:
        rdap.requests = []
        result = run_report(["--spam", "198.51.100.7", "--rdap-url", f"http://127.0.0.1:{rdap.server_address[1]}/ripe/"],
                            reporter_env, b"Received: from 198.51.100.7\n")
    assert result.returncode == 0, result.stderr
    out = result.stdout.decode()
    assert "198.51.100.7 is not on netimmune" in out and "abuse contact (RDAP): abuse@" in out
    written = sorted((Path(reporter_env["NETIMMUNE_CONFIG_DIR"]) / "outbox").glob("*.eml"))[-1]
    message = message_from_bytes(written.read_bytes(), policy=policy.default)
    assert message.get_content_type() == "multipart/report"
    assert message.get_param("report-type") == "feedback-report"


def test_report_without_a_category_is_refused_clearly(tree, reporter_env):
    result = run_report(["127.0.1.9"], reporter_env)
    assert result.returncode == 2 and b"say what the address did" in result.stderr


def test_report_with_a_bad_address_is_refused_clearly(tree, reporter_env):
    result = run_report(["--spam", "127.0.1.999"], reporter_env)
    assert result.returncode == 2 and b"is not an IPv4 or IPv6 address" in result.stderr


def test_owner_refusal_is_explained(tree, reporter_env):
    result = run_report(["--spam", "127.0.1.9", "--time", "2001-01-01T00:00:00Z"], reporter_env)
    assert result.returncode == 1 and b"timestamp_too_old" in result.stderr


def test_unreachable_owner_is_explained(tree, reporter_env, tmp_path):
    env = {**reporter_env, "NETIMMUNE_ROOT_URL": "http://127.0.0.1:9"}
    result = run_report(["--spam", "127.0.1.9"], env)
    assert result.returncode == 1 and b"did not answer" in result.stderr


def test_stale_referral_cache_is_corrected_by_a_421(tree):
    """A client that still sends to the ISP for the customer's space is redirected and delivers there."""
    from chalicelib.client.fetch import Fetcher
    from chalicelib.client.resolver import Resolver
    from chalicelib.client.submitter import Submitter
    from chalicelib.protocol.categories import by_slug
    from chalicelib.protocol.keys import KeyPair
    from chalicelib.protocol.report import build_report, sign_envelope

    submitter = Submitter(Resolver(tree.root.url, tree.anchor, Fetcher(allow_local=True)))
    stale = submitter.owner("127.0.2.1")   # the ISP: right for 127.0.2.1, wrong for the customer's space
    report = build_report(by_slug("spam"), "127.0.1.50", {}, datetime.now(timezone.utc))
    delivery = submitter.deliver(sign_envelope(report, KeyPair.generate()), resolution=stale)
    assert delivery.endpoint == tree.customer.url and delivery.status == 202


def test_dry_run_json_for_unowned_space_is_a_no_owner_refusal_with_the_nodes_answer(tree, reporter_env):
    result = run_report(["--dry-run", "--json", "::1"], reporter_env)
    assert result.returncode == 3, result.stderr
    refusal = json.loads(result.stdout)
    assert refusal["error"]["code"] == "no_owner" and refusal["error"]["message"] in result.stderr.decode()
    assert refusal["resolution"]["answer"] == "none" and refusal["resolution"]["referral"]["answer"] == "none"


@pytest.mark.parametrize("args,code,exit_code", [
    (["--ddos", "::1"], "no_abuse_contact", 3),
    (["--spam", "198.51.100.7", "--rdap-url", "http://127.0.0.1:9/"], "rdap_failed", 1),
    (["--spam", "127.0.1.9", "--time", "2001-01-01T00:00:00Z"], "rejected", 1),
    (["status", "6f1d7c1e-0000-4000-8000-000000000000", "--endpoint", "{isp}"], "not_found", 1),
])
def test_json_errors_are_json_on_stdout(tree, reporter_env, args, code, exit_code):
    args = [arg.format(isp=tree.isp.url) for arg in args]
    result = run_report([*args, "--json"], reporter_env)
    assert result.returncode == exit_code, result.stderr
    error = json.loads(result.stdout)["error"]
    assert error["code"] == code and error["message"] in result.stderr.decode()


def test_report_status_of_an_unknown_report_prints_the_nodes_message(tree, reporter_env):
    result = run_report(["status", "6f1d7c1e-0000-4000-8000-000000000000", "--endpoint", tree.isp.url], reporter_env)
    assert result.returncode == 1
    assert result.stderr.decode().strip() == (f"error: {tree.isp.url} answered 404: no report "
                                              "6f1d7c1e-0000-4000-8000-000000000000 here")
