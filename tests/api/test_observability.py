"""The powertools middleware: JSON log lines under a correlation id, EMF metrics per invocation, routes intact."""
from __future__ import annotations

import io
import json
import uuid

import pytest
from chalice.local import LambdaContext, LocalGateway
from chalice.config import Config

import app as node_app
from chalicelib import observability
from chalicelib.adapters.local_worker import job_body
from chalicelib.adapters.sqlite_db import SQLiteDatabase
from chalicelib.adapters.sqlite_verification import SQLiteVerificationStore
from chalicelib.core.ports import Job
from chalicelib.core.verification import THRESHOLD
from chalicelib.observability import MetricCounts, report_outcomes
from chalicelib.protocol.keys import KeyPair
from tests.api.conftest import make_api
from tests.api.test_intake import envelope, holding
from tests.api.test_sqs_handler import run_worker
from tests.conftest import NOW

NAMESPACE = "netimmune-test"


@pytest.fixture(autouse=True)
def fresh_counts():
    """Counts made outside any invocation by other tests (core called directly) are not this test's."""
    observability.metrics.flush(None)


@pytest.fixture
def log_lines():
    """The JSON lines the powertools logger writes, read back as dicts."""
    stream = io.StringIO()
    previous = observability.logger.logger_handler.setStream(stream)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    observability.logger.logger_handler.setStream(previous)


def emitted_metrics(stdout: str) -> dict[tuple[str, tuple], float]:
    """{(metric, ((dimension, value), ...)): value} from the EMF documents printed, the service dimension aside."""
    found = {}
    for line in stdout.splitlines():
        document = json.loads(line) if line.startswith("{") else {}
        for directive in document.get("_aws", {}).get("CloudWatchMetrics", []):
            assert directive["Namespace"] == NAMESPACE and document["service"] == "netimmune"
            [dimensions] = directive["Dimensions"]
            for metric in directive["Metrics"]:
                key = tuple((name, document[name]) for name in dimensions if name != "service")
                value = document[metric["Name"]]  # EMF allows a list of values
                found[metric["Name"], key] = sum(value) if isinstance(value, list) else value
    return found


def test_api_gateway_request_is_logged_as_json_under_its_request_id(tmp_path, log_lines):
    """The id API Gateway gives a request is the one to search the logs for; the answer is untouched."""
    api = make_api(tmp_path)
    event = LocalGateway(node_app.app, Config()).event_converter.create_lambda_event("GET", "/v1/node", {}, None)
    event["requestContext"]["requestId"] = "c0ffee-1"
    response = node_app.app(event, LambdaContext("api_handler", 512))
    assert response["statusCode"] == 200 and json.loads(response["body"])["key"] == api.node.key.public
    [line] = [line for line in log_lines() if line["message"] == "request"]
    assert {key: line[key] for key in ("level", "service", "correlation_id", "method", "route", "status")} == {
        "level": "INFO", "service": "netimmune", "correlation_id": "c0ffee-1", "method": "GET", "route": "/v1/node",
        "status": 200}
    assert line["duration_ms"] >= 0


def test_a_node_that_cannot_be_built_gets_the_json_error_shape_not_chalices(monkeypatch):
    """A cold start with a missing setting: the answer is the app's 500, and the metrics flush at the end of the
    request does not try to build the node again."""
    from chalicelib.settings import SettingsError
    from chalicelib.wiring import NodeHolder

    def unbuildable():
        raise SettingsError("NETIMMUNE_TABLE must be set")
    monkeypatch.setattr(node_app, "current", NodeHolder(unbuildable))
    event = LocalGateway(node_app.app, Config()).event_converter.create_lambda_event("GET", "/v1/node", {}, None)
    response = node_app.app(event, LambdaContext("api_handler", 512))
    assert response["statusCode"] == 500 and json.loads(response["body"])["error"]["code"] == "internal"


def test_failed_job_is_logged_with_its_message_id_and_the_error(tmp_path, log_lines):
    """One bad message in a batch: the line about it carries its message id and the traceback."""
    api = make_api(tmp_path)
    assert run_worker(api.client, {"good": job_body(Job("j1", "digest", {"window_start": 0})),
                                   "bad": job_body(Job("j2", "no-such-kind", {}))}) == ["bad"]
    [failure] = log_lines()
    assert (failure["message"], failure["level"], failure["correlation_id"]) == ("job failed", "ERROR", "bad")
    assert "no handler for job kind 'no-such-kind'" in failure["exception"]


def test_intake_answers_are_counted_by_outcome_and_reason_in_emf(tmp_path, root_key, capsys):
    """A batch answered item by item counts each report; a refused single report counts under its code."""
    api = make_api(tmp_path, dev_mode=True, trust_anchor=root_key.public, metrics_namespace=NAMESPACE)
    holding(api, root_key)
    forged = envelope()
    forged["signature"] = envelope(key=KeyPair.generate())["signature"]
    capsys.readouterr()
    status, _ = api.call("POST", "/v1/reports/batch", {"reports": [envelope(), envelope(), forged,
                                                                   envelope(ip="127.1.0.9")]})
    assert status == 200
    assert emitted_metrics(capsys.readouterr().out) == {
        ("ReportsAccepted", ()): 2, ("ReportsRejected", (("reason", "bad_signature"),)): 1,
        ("ReportsRejected", (("reason", "misdirected"),)): 1}
    assert api.call("POST", "/v1/reports", forged)[0] == 401
    assert emitted_metrics(capsys.readouterr().out) == {("ReportsRejected", (("reason", "bad_signature"),)): 1}


def test_alert_sent_by_a_job_is_counted_in_that_invocations_metrics(tmp_path, capsys):
    api = make_api(tmp_path, metrics_namespace=NAMESPACE)
    capsys.readouterr()
    job = job_body(Job(uuid.uuid4().hex, THRESHOLD, {"ip": "192.0.2.7", "category": "open-proxy", "score": 4.0}))
    assert run_worker(api.client, {"m1": job}) == []
    assert emitted_metrics(capsys.readouterr().out) == {("AlertsSent", ()): 1}


def test_verification_is_counted_by_verdict_once_however_often_it_is_recorded(capsys):
    """A redelivered verify job records nothing the second time, and so counts nothing."""
    counts = MetricCounts()
    store = observability.CountedVerifications(SQLiteVerificationStore(SQLiteDatabase(":memory:")), counts)
    for _ in range(2):
        store.record_verification("v1", "192.0.2.7", "open-proxy", "confirmed", {"verdict": "confirmed"}, 1.25, NOW)
    assert store.verification("v1")["verdict"] == "confirmed"
    counts.flush(NAMESPACE)
    assert emitted_metrics(capsys.readouterr().out) == {("Verifications", (("verdict", "confirmed"),)): 1}


def test_local_node_without_a_namespace_prints_no_metrics(tmp_path, capsys):
    api = make_api(tmp_path, dev_mode=True)
    capsys.readouterr()
    assert api.call("POST", "/v1/reports", envelope())[0] == 421
    assert "_aws" not in capsys.readouterr().out


@pytest.mark.parametrize("route, status, body, outcomes", [
    ("/v1/reports", 202, '{"report_id": "r1"}', {None: 1}),
    ("/v1/reports", 200, '{"report_id": "r1"}', {None: 1}),
    ("/v1/reports", 422, '{"error": {"code": "timestamp_too_old"}}', {"timestamp_too_old": 1}),
    ("/v1/reports/batch", 429, '{"error": {"code": "rate_limited"}}', {"rate_limited": 1}),
    ("/v1/reports/batch", 400, "not json", {"unknown": 1}),
    ("/v1/delegations", 201, "{}", {}),
])
def test_report_outcomes_read_from_the_answer(route, status, body, outcomes):
    assert report_outcomes(route, status, body) == outcomes
