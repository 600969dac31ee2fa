"""Report intake (DESIGN.md §4): verify, check, store once, count on the case — in that order.

Every refusal happens before anything is stored, and a report is stored before any side effect, so a
crash never loses an acknowledged report and a bad input never changes stored data.
"""
from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from ..protocol.endorsement import Standing, evaluate_credentials
from ..protocol.encoding import format_time
from ..protocol.report import Report, ReportError, parse_report
from ..protocol.signing import canonical_bytes, signature_problem
from .errors import BadRequest, Conflict, Misdirected, NodeError, PayloadTooLarge, TooManyRequests, Unauthorized, Unprocessable
from .node import Node
from .ports import Outcome, ReportRecord, Role
from .referral import refer_address
from .targets import refuse_special
from .verification import after_intake

MAX_BATCH = 1000
log = logging.getLogger("netimmune.intake")


@dataclass(frozen=True)
class Answer:
    """The answer to one envelope: an HTTP status and a JSON body (and headers, for 429)."""

    status: int
    body: dict
    headers: dict = field(default_factory=dict)

    @classmethod
    def refusal(cls, error: NodeError) -> Answer:
        return cls(error.status, error.to_json(), error.headers)


@dataclass(frozen=True)
class Admitted:
    report: Report
    record: ReportRecord
    standing: Standing


def _check_window(node: Node, report: Report, now: datetime) -> None:
    limits = node.settings
    if report.observed > now + timedelta(minutes=limits.max_future_minutes):
        raise Unprocessable(f"timestamp {report.body['timestamp']} is more than {limits.max_future_minutes} "
                            "minutes in the future", code="timestamp_in_future")
    if report.observed < now - timedelta(days=limits.max_age_days):
        raise Unprocessable(f"timestamp {report.body['timestamp']} is older than {limits.max_age_days} days",
                            code="timestamp_too_old")


def _check_ownership(node: Node, report: Report) -> None:
    refuse_special(report.ip, node.settings.dev_mode)
    referral = refer_address(node, report.ip)
    if referral.match is not None and referral.match.role is Role.HELD:
        return
    where = ("a child node takes reports for it; follow the referral" if referral.match is not None
             else "it is outside this node's space; resolve it from the root")
    raise Misdirected(f"this node does not take reports for {report.ip}: {where}", body=referral.to_json())


def admit(node: Node, envelope: Any, now: datetime) -> Admitted:
    """Every check of one envelope; raises the refusal, stores nothing."""
    if not isinstance(envelope, dict) or not {"report", "signature"} <= set(envelope) \
            or not set(envelope) <= {"report", "signature", "credentials"}:
        raise BadRequest("an envelope is an object with report, signature and optional credentials",
                         code="bad_envelope")
    credentials = envelope.get("credentials") or []
    if not isinstance(credentials, list) or len(credentials) > 10:
        raise BadRequest("credentials must be a list of at most 10 signed documents", code="bad_envelope")
    problem = signature_problem(envelope["report"], envelope["signature"])
    if problem:
        raise Unauthorized(f"report signature refused: {problem}", code="bad_signature")
    try:
        report = parse_report(envelope["report"])
    except ReportError as exc:
        kind = PayloadTooLarge if exc.code == "evidence_too_large" else BadRequest
        raise kind(str(exc), code=exc.code) from None
    _check_window(node, report, now)
    _check_ownership(node, report)
    reporter = envelope["signature"]["key"]
    standing = evaluate_credentials(credentials, reporter, node.anchor, now)
    answer = {"report_id": report.report_id, "status": "received", "ip": str(report.ip),
              "category": report.category.slug, "received": format_time(now), "rank": standing.rank}
    if standing.problem:
        answer["credentials_ignored"] = standing.problem
    record = ReportRecord(
        report_id=report.report_id, digest=hashlib.sha256(canonical_bytes(report.body)).hexdigest(),
        ip=str(report.ip), category=report.category.slug, reporter=reporter, rank=standing.rank,
        observed=report.observed, received=now, envelope_json=json.dumps(envelope, separators=(",", ":")),
        answer_json=json.dumps(answer, separators=(",", ":")))
    return Admitted(report, record, standing)


def limit_client(node: Node, client: str) -> None:
    retry = node.reports.take(f"client:{client}", 1, node.settings.client_rate_per_minute, 60, node.clock.now())
    if retry is not None:
        raise TooManyRequests(f"too many requests from {client}; retry in {retry} s", retry)


def submit(node: Node, envelopes: Sequence[Any]) -> list[Answer]:
    """Admit, rate-limit per reporter key, and record a batch of envelopes in one transaction."""
    now = node.clock.now()
    answers: list[Answer | None] = [None] * len(envelopes)
    admitted: dict[int, Admitted] = {}
    for index, envelope in enumerate(envelopes):
        try:
            admitted[index] = admit(node, envelope, now)
        except NodeError as error:
            answers[index] = Answer.refusal(error)
    per_key = Counter(item.record.reporter for item in admitted.values())
    refused_keys = {}
    for key, count in per_key.items():
        retry = node.reports.take(f"key:{key}", count, node.settings.key_rate_per_minute, 60, now)
        if retry is not None:
            refused_keys[key] = TooManyRequests(f"reporter key {key[:20]}… sent too many reports; "
                                                f"retry in {retry} s", retry)
    for index, item in list(admitted.items()):
        if item.record.reporter in refused_keys:
            answers[index] = Answer.refusal(refused_keys[item.record.reporter])
            del admitted[index]
    order = list(admitted)
    outcomes = node.reports.record_reports([admitted[i].record for i in order],
                                           int(node.tally.count_window_hours * 3600))
    try:
        after_intake(node, [(admitted[i].record.ip, admitted[i].record.category)
                            for i, (outcome, _) in zip(order, outcomes) if outcome is Outcome.NEW])
    except Exception:  # the reports are stored and answered; policy runs again on the next report
        log.exception("policy evaluation after intake failed")
    for index, (outcome, answer_json) in zip(order, outcomes):
        if outcome is Outcome.CONFLICT:
            answers[index] = Answer.refusal(Conflict(
                f"report_id {admitted[index].report.report_id} was already used for a different report",
                code="replay_conflict"))
        else:
            answers[index] = Answer(202 if outcome is Outcome.NEW else 200, json.loads(answer_json))
    return answers


def parse_batch(body: Any) -> list:
    reports = body.get("reports") if isinstance(body, dict) else None
    if not isinstance(reports, list):
        raise BadRequest("a batch is an object with a list 'reports' of envelopes", code="bad_batch")
    if len(reports) > MAX_BATCH:
        raise PayloadTooLarge(f"a batch holds at most {MAX_BATCH} reports, not {len(reports)}", code="batch_too_large")
    return reports
