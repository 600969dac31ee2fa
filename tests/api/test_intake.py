"""Report intake through the API: every refusal with its status and nothing stored; tallies."""
from __future__ import annotations

import copy
import json
import uuid
from datetime import timedelta

import pytest

from chalicelib.core import intake
from chalicelib.protocol.categories import by_slug
from chalicelib.protocol.endorsement import issue_endorsement
from chalicelib.protocol.keys import KeyPair
from chalicelib.protocol.report import MAX_EVIDENCE_BYTES, Evidence, build_report, sign_envelope
from tests.api.conftest import make_api
from tests.conftest import NOW, delegate

REPORTER = KeyPair.from_seed(b"\x11" * 32)
WHO = {"org": "Example Abuse Desk", "contact": "abuse@example.net", "domain": "example.net"}


def envelope(ip="127.0.0.9", key=REPORTER, observed=NOW, category="open-proxy", credentials=None, **extra):
    report = build_report(by_slug(category), ip, WHO, observed,
                          evidence=(Evidence("text/plain", b"CONNECT 127.0.0.9:3128 200\n", "proxy log"),), **extra)
    return sign_envelope(report, key, credentials)


def holding(api, root_key, prefix="127.0.0.0/16"):
    """The node installs a delegation of prefix from the root; returns the signed delegation."""
    held = delegate(root_key, prefix, api.node.key)
    assert api.call("PUT", "/v1/delegations/held", [held.document], token=api.token("admin"))[0] == 200
    return held


@pytest.fixture
def isp(tmp_path, root_key):
    """A node holding 127.0.0.0/16 that delegated 127.0.1.0/24 to a child."""
    api = make_api(tmp_path, dev_mode=True, trust_anchor=root_key.public)
    api.held = holding(api, root_key)
    assert api.call("POST", "/v1/delegations", {"prefix": "127.0.1.0/24", "holder": KeyPair.generate().public,
                                                "endpoint": "http://127.0.0.3:8080"}, token=api.token("admin"))[0] == 201
    with api.client:
        yield api


def stored_nothing(api, report_id=None) -> bool:
    return api.node.reports.list_cases() == [] and (report_id is None or api.node.reports.get_report(report_id) is None)


def test_signed_report_for_own_space_is_accepted_and_opens_a_case(isp):
    sent = envelope()
    status, body = isp.call("POST", "/v1/reports", sent)
    assert status == 202
    assert body["report_id"] == sent["report"]["report_id"] and body["status"] == "received"
    status, cases = isp.call("GET", "/v1/cases", token=isp.token("reader"))
    assert [(c["ip"], c["category"], c["score"]) for c in cases["cases"]] == [("127.0.0.9", "open-proxy", 1.0)]
    # policy runs from the queue, after the answer: the case waits for it as received
    assert isp.call("GET", f"/v1/reports/{body['report_id']}")[1]["status"] == "received"
    assert isp.node.queue.lease("test", 10, 60, NOW)[0].payload == {"cases": [["127.0.0.9", "open-proxy"]]}


def test_forged_signature_is_401_and_stores_nothing(isp):
    forged = envelope()
    forged["signature"] = envelope(key=KeyPair.generate())["signature"]
    status, body = isp.call("POST", "/v1/reports", forged)
    assert (status, body["error"]["code"]) == (401, "bad_signature")
    assert stored_nothing(isp, forged["report"]["report_id"])


def test_evidence_changed_after_signing_breaks_the_signature(isp):
    tampered = envelope()
    tampered["report"]["evidence"][0]["payload"] = "ZXZpbA=="
    assert isp.call("POST", "/v1/reports", tampered)[0] == 401
    assert stored_nothing(isp)


def test_evidence_hash_that_does_not_match_its_payload_is_400(isp):
    sent = envelope()
    report = copy.deepcopy(sent["report"])
    report["evidence"][0]["hash"] = "sha256:" + "0" * 64
    status, body = isp.call("POST", "/v1/reports", sign_envelope(report, REPORTER))
    assert (status, body["error"]["code"]) == (400, "evidence_hash_mismatch")
    assert stored_nothing(isp)


def test_exact_resend_is_200_with_the_first_answer_and_counts_once(isp):
    sent = envelope()
    first = isp.call("POST", "/v1/reports", sent)
    again = isp.call("POST", "/v1/reports", sent)
    assert first[0] == 202 and again == (200, first[1])
    assert isp.node.reports.list_cases()[0].reports == 1


@pytest.mark.parametrize("change", [
    {"service": "smtp"},                                     # an open relay's service under open-proxy
    {"service": None},                                       # open_service without its service
    {"tags": ["rsit:abusive-content/spam", "netimmune:open-proxy"]},
], ids=["other-service", "no-service", "other-rsit-tag"])
def test_report_whose_fields_contradict_its_category_is_400(isp, change):
    report = envelope()["report"]
    report.update(change)
    report = {key: value for key, value in report.items() if value is not None}
    status, body = isp.call("POST", "/v1/reports", sign_envelope(report, REPORTER))
    assert (status, body["error"]["code"]) == (400, "bad_category")
    assert stored_nothing(isp)


@pytest.mark.parametrize("credentials", [{}, False, "noc"])
def test_credentials_that_are_not_a_list_are_400(isp, credentials):
    status, body = isp.call("POST", "/v1/reports", {**envelope(), "credentials": credentials})
    assert (status, body["error"]["code"]) == (400, "bad_envelope")
    assert stored_nothing(isp)


@pytest.mark.parametrize("path", ["/v1/reports", "/v1/reports/batch"])
@pytest.mark.parametrize("raw", [b"[" * 100_000, b'{"reports": [NaN]}', b'{"report": {"confidence": Infinity}}'],
                         ids=["nested-too-deep", "nan", "infinity"])
def test_bodies_that_are_not_json_are_400(isp, path, raw):
    status, body = isp.call("POST", path, raw=raw)
    assert (status, body["error"]["code"]) == (400, "bad_json")


def test_same_report_id_with_a_different_body_is_409(isp):
    sent = envelope()
    isp.call("POST", "/v1/reports", sent)
    other = envelope(report_id=sent["report"]["report_id"], comment="changed")
    status, body = isp.call("POST", "/v1/reports", other)
    assert (status, body["error"]["code"]) == (409, "replay_conflict")
    assert isp.node.reports.get_report(sent["report"]["report_id"]).digest != ""
    assert isp.node.reports.list_cases()[0].reports == 1


@pytest.mark.parametrize("observed,code", [
    (NOW + timedelta(minutes=16), "timestamp_in_future"),
    (NOW - timedelta(days=61), "timestamp_too_old"),
])
def test_timestamps_outside_the_window_are_422(isp, observed, code):
    status, body = isp.call("POST", "/v1/reports", envelope(observed=observed))
    assert (status, body["error"]["code"]) == (422, code)
    assert stored_nothing(isp)


def test_timestamps_at_the_edges_of_the_window_are_accepted(isp):
    assert isp.call("POST", "/v1/reports", envelope(observed=NOW + timedelta(minutes=15)))[0] == 202
    assert isp.call("POST", "/v1/reports", envelope(observed=NOW - timedelta(days=60)))[0] == 202


def test_report_for_child_space_is_misdirected_with_referral(isp):
    status, body = isp.call("POST", "/v1/reports", envelope(ip="127.0.1.9"))
    assert status == 421 and body["error"]["code"] == "misdirected"
    assert body["answer"] == "referral" and body["endpoint"] == "http://127.0.0.3:8080"
    assert body["chain"][0] == isp.held.document and len(body["chain"]) == 2
    assert stored_nothing(isp)


def test_report_outside_the_nodes_space_is_misdirected_without_referral(isp):
    status, body = isp.call("POST", "/v1/reports", envelope(ip="127.9.0.1"))
    assert (status, body["answer"]) == (421, "none")


def test_once_its_delegation_expired_the_node_neither_refers_nor_takes_reports_for_the_space(isp):
    isp.node.clock.moment = NOW + timedelta(days=366)   # past the held delegation's not_after
    assert isp.call("GET", "/v1/refer/127.0.0.9") == (404, {"answer": "none", "ip": "127.0.0.9", "ttl": 300})
    status, body = isp.call("POST", "/v1/reports", envelope(observed=isp.node.clock.moment))
    assert (status, body["answer"], body["error"]["code"]) == (421, "none", "misdirected")
    assert stored_nothing(isp)


def test_production_node_refuses_special_purpose_sources_with_422(tmp_path):
    api = make_api(tmp_path, dev_mode=False)
    status, body = api.call("POST", "/v1/reports", envelope())
    assert (status, body["error"]["code"]) == (422, "special_purpose")


def test_oversized_body_is_413(isp):
    status, _ = isp.call("POST", "/v1/reports", raw=b"{" + b" " * (512 * 1024) + b"}")
    assert status == 413
    assert stored_nothing(isp)


def test_oversized_evidence_is_413(isp):
    report = build_report(by_slug("spam"), "127.0.0.9", WHO, NOW,
                          evidence=(Evidence("text/plain", b"x" * (MAX_EVIDENCE_BYTES + 1)),))
    status, body = isp.call("POST", "/v1/reports", sign_envelope(report, REPORTER))
    assert status == 413 and body["error"]["code"] in ("evidence_too_large", "too_large")
    assert stored_nothing(isp)


def test_a_report_too_large_to_store_whole_is_413(isp):
    """Evidence within its limit, but with every other field at its own, more than a store item holds."""
    evidence = [Evidence("text/plain", b"x" * (MAX_EVIDENCE_BYTES - 32 * 1024), "d" * 4096)]
    evidence += [Evidence("text/plain", b"y", "d" * 4096) for _ in range(20)]
    report = build_report(by_slug("spam"), "127.0.0.9", WHO, NOW, evidence=tuple(evidence), comment="c" * 4096)
    status, body = isp.call("POST", "/v1/reports", sign_envelope(report, REPORTER))
    assert (status, body["error"]["code"]) == (413, "report_too_large")
    assert stored_nothing(isp)


def test_the_largest_evidence_still_fits_in_a_report(isp):
    report = build_report(by_slug("spam"), "127.0.0.9", WHO, NOW,
                          evidence=(Evidence("text/plain", b"x" * MAX_EVIDENCE_BYTES, "d" * 4096),), comment="c" * 4096)
    assert isp.call("POST", "/v1/reports", sign_envelope(report, REPORTER))[0] == 202


@pytest.mark.parametrize("change", [
    lambda r: r["reporter"].update(org="o" * 257),
    lambda r: r["evidence"][0].update(description="d" * 4097),
    lambda r: r["evidence"][0].update(content_type="t/" + "x" * 254),
], ids=["reporter-org", "evidence-description", "content-type"])
def test_overlong_text_fields_are_400(isp, change):
    report = copy.deepcopy(envelope()["report"])
    change(report)
    status, body = isp.call("POST", "/v1/reports", sign_envelope(report, REPORTER))
    assert status == 400 and body["error"]["code"] in ("bad_field", "bad_evidence")
    assert stored_nothing(isp)


def test_oversized_batch_is_413(isp):
    status, body = isp.call("POST", "/v1/reports/batch", {"reports": [{}] * 1001})
    assert (status, body["error"]["code"]) == (413, "batch_too_large")


def test_batch_answers_each_item_on_its_own(isp):
    good, misdirected = envelope(), envelope(ip="127.0.1.1")
    status, body = isp.call("POST", "/v1/reports/batch", {"reports": [good, "junk", misdirected, good]})
    assert status == 200
    assert [r["status"] for r in body["results"]] == [202, 400, 421, 200]
    assert [r["index"] for r in body["results"]] == [0, 1, 2, 3]


def test_reporter_key_over_its_rate_gets_429_with_retry_after(tmp_path, root_key):
    api = make_api(tmp_path, dev_mode=True, trust_anchor=root_key.public, key_rate_per_minute=3)
    holding(api, root_key)
    statuses = [api.call("POST", "/v1/reports", envelope())[0] for _ in range(4)]
    assert statuses == [202, 202, 202, 429]
    response = api.client.http.post("/v1/reports", headers={"Content-Type": "application/json"},
                                    body=json.dumps(envelope()).encode())
    assert response.status_code == 429 and int(response.headers["Retry-After"]) >= 1
    assert json.loads(response.body)["retry_after"] == int(response.headers["Retry-After"])
    assert api.node.reports.list_cases()[0].reports == 3


def test_batch_larger_than_what_its_key_may_send_gets_what_fits_and_only_that_counts(tmp_path, root_key):
    """A key may send 3 a minute: a batch of 5 has its first 3 accepted, the other 2 refused with 429, and a
    later report waits for the next window, not for the refused ones to age out."""
    api = make_api(tmp_path, dev_mode=True, trust_anchor=root_key.public, key_rate_per_minute=3)
    holding(api, root_key)
    status, body = api.call("POST", "/v1/reports/batch", {"reports": [envelope() for _ in range(5)]})
    assert status == 200 and [item["status"] for item in body["results"]] == [202, 202, 202, 429, 429]
    assert body["results"][3]["answer"]["retry_after"] >= 1
    api.node.clock.moment += timedelta(seconds=60)
    status, body = api.call("POST", "/v1/reports/batch", {"reports": [envelope() for _ in range(4)]})
    assert [item["status"] for item in body["results"]] == [202, 202, 202, 429]
    assert api.node.reports.list_cases()[0].reports == 6


def test_client_over_its_rate_gets_429(tmp_path):
    api = make_api(tmp_path, dev_mode=True, client_rate_per_minute=2)
    statuses = [api.call("POST", "/v1/reports", {})[0] for _ in range(3)]
    assert statuses == [400, 400, 429]


def test_one_reporter_sending_a_report_100_times_moves_the_score_once(isp):
    for _ in range(100):
        assert isp.call("POST", "/v1/reports", envelope())[0] == 202
    case = isp.call("GET", "/v1/cases/127.0.0.9", token=isp.token("reader"))[1]["cases"][0]
    assert case["score"] == 1.0 and case["reports"] == 100 and len(case["reporters"]) == 1


def test_second_reporter_adds_to_the_score(isp):
    isp.call("POST", "/v1/reports", envelope())
    isp.call("POST", "/v1/reports", envelope(key=KeyPair.generate()))
    assert isp.call("GET", "/v1/cases", token=isp.token("reader"))[1]["cases"][0]["score"] == 2.0


def test_noc_endorsed_report_outweighs_an_anonymous_one_by_the_configured_factor(isp, root_key):
    noc = KeyPair.generate()
    credentials = [isp.held.document,
                   issue_endorsement(isp.node.key, noc.public, "Example NOC", "noc", NOW + timedelta(days=30))]
    status, body = isp.call("POST", "/v1/reports", envelope(ip="127.0.0.20", key=noc, credentials=credentials))
    assert status == 202 and body["rank"] == "noc"
    isp.call("POST", "/v1/reports", envelope(ip="127.0.0.21"))
    scores = {c["ip"]: c["score"] for c in isp.call("GET", "/v1/cases", token=isp.token("reader"))[1]["cases"]}
    weights = isp.node.tally.weights
    assert scores["127.0.0.20"] / scores["127.0.0.21"] == weights["noc"] / weights["anonymous"]


def test_endorsement_not_rooted_in_the_tree_is_ignored_not_fatal(isp):
    stranger = KeyPair.generate()
    noc = KeyPair.generate()
    credentials = [issue_endorsement(stranger, noc.public, "Fake NOC", "noc", NOW + timedelta(days=1))]
    status, body = isp.call("POST", "/v1/reports", envelope(key=noc, credentials=credentials))
    assert status == 202 and body["rank"] == "anonymous" and "credentials_ignored" in body


def test_operator_resolves_a_case_and_the_reporter_sees_it(isp):
    report_id = isp.call("POST", "/v1/reports", envelope())[1]["report_id"]
    reader = isp.token("reader")
    assert isp.call("POST", "/v1/cases/127.0.0.9/open-proxy/resolve", token=reader)[0] == 200
    assert isp.call("GET", f"/v1/reports/{report_id}")[1]["status"] == "resolved"
    assert isp.call("POST", "/v1/cases/127.0.0.9/spam/resolve", token=reader)[0] == 404


def test_reporter_status_never_shows_evidence(isp):
    report_id = isp.call("POST", "/v1/reports", envelope())[1]["report_id"]
    status, body = isp.call("GET", f"/v1/reports/{report_id}")
    assert status == 200 and "evidence" not in str(body)
    assert isp.call("GET", f"/v1/reports/{uuid.uuid4()}")[0] == 404


def test_cases_need_a_reader_token_and_show_the_evidence(isp):
    isp.call("POST", "/v1/reports", envelope())
    assert isp.call("GET", "/v1/cases/127.0.0.9")[0] == 401
    assert isp.call("GET", "/v1/cases/127.0.0.9", token=isp.token("appliance"))[0] == 403
    case = isp.call("GET", "/v1/cases/127.0.0.9", token=isp.token("reader"))[1]["cases"][0]
    assert case["evidence_reports"][0]["report"]["evidence"][0]["description"] == "proxy log"


def test_a_batch_its_rate_windows_and_its_policy_job_commit_once(isp):
    """One sync to disk per batch, and no window in which the reports are stored but their policy job is not."""
    statements = []
    isp.node.reports.db.connection.set_trace_callback(statements.append)
    sent = [envelope(ip=f"127.0.0.{n}") for n in range(1, 6)]
    assert [a.status for a in intake.submit(isp.node, sent)] == [202] * 5
    isp.node.reports.db.connection.set_trace_callback(None)
    assert [s for s in statements if s in ("BEGIN IMMEDIATE", "COMMIT")] == ["BEGIN IMMEDIATE", "COMMIT"]
    assert len(isp.node.queue.lease("test", 10, 60, NOW)) == 1


def test_reports_refused_by_the_store_leave_no_rate_count_and_no_policy_job(isp, monkeypatch):
    def fail(*_):
        raise OSError("disk full")
    monkeypatch.setattr(isp.node.reports, "record_reports", fail)
    with pytest.raises(OSError):
        intake.submit(isp.node, [envelope()])
    # the refused report was not counted against its key: one more fits under a limit of one
    assert isp.node.reports.take({f"key:{REPORTER.public}": 1}, 1, 60, NOW)[f"key:{REPORTER.public}"].granted == 1
    assert isp.node.queue.lease("test", 10, 60, NOW) == []
