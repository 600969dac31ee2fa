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
from typing import Any, NamedTuple

import orjson

from ..protocol.endorsement import MAX_CREDENTIALS, Standing, evaluate_credentials
from ..protocol.encoding import format_time
from ..protocol.report import Report, ReportError, parse_report
from ..protocol.signing import CanonicalizationError, bytes_signature_problem, canonical_bytes
from .errors import BadRequest, Conflict, Misdirected, NodeError, PayloadTooLarge, TooManyRequests, Unauthorized, Unprocessable
from .node import Node
from .ports import Outcome, ReportRecord, Role
from .referral import Referral, refer_address
from .targets import refuse_special
from .verification import EVALUATE

MAX_BATCH = 1000
# A stored envelope in bytes: 256 KiB of evidence is 342 KiB in base64, and a DynamoDB item, which holds the
# envelope beside the answer and the case keys, may not exceed 400 KB
MAX_STORED_ENVELOPE = 380 * 1024
log = logging.getLogger("netimmune.intake")
_ENVELOPE_REQUIRED = frozenset(("report", "signature"))
_ENVELOPE_FIELDS = frozenset(("report", "signature", "credentials"))
_ANONYMOUS = Standing()


@dataclass(frozen=True)
class Answer:
    """The answer to one envelope: an HTTP status and a JSON body (and headers, for 429)."""

    status: int
    body: dict
    headers: dict = field(default_factory=dict)

    @classmethod
    def refusal(cls, error: NodeError) -> Answer:
        return cls(error.status, error.to_json(), error.headers)


class Admitted(NamedTuple):
    """An envelope that passed every check: the record to store, and the answer once it is stored."""

    record: ReportRecord
    answer: dict


class Checks:
    """Every check of one envelope, with what a whole batch shares worked out once: the time window, the
    received stamp, and one ownership lookup per address held (a batch often names one address many times)."""

    def __init__(self, node: Node, now: datetime):
        limits = node.settings
        self.node, self.now, self.anchor = node, now, node.anchor
        self.latest = now + timedelta(minutes=limits.max_future_minutes)
        self.earliest = now - timedelta(days=limits.max_age_days)
        self.received = format_time(now)
        self.held: set[str] = set()                 # addresses this node takes reports for
        self.referred: dict[str, Referral] = {}     # and the referral for those it does not

    def admit(self, envelope: Any) -> Admitted:
        """Raises the refusal; stores nothing."""
        if not isinstance(envelope, dict) or not _ENVELOPE_REQUIRED <= envelope.keys() <= _ENVELOPE_FIELDS:
            raise BadRequest("an envelope is an object with report, signature and optional credentials",
                             code="bad_envelope")
        credentials = envelope.get("credentials")
        credentials = [] if credentials is None else credentials
        if not isinstance(credentials, list) or len(credentials) > MAX_CREDENTIALS:
            raise BadRequest(f"credentials must be a list of at most {MAX_CREDENTIALS} signed documents",
                             code="bad_envelope")
        try:
            message = canonical_bytes(envelope["report"])
        except CanonicalizationError as exc:
            raise Unauthorized(f"report signature refused: cannot canonicalize the report: {exc}",
                               code="bad_signature") from None
        signature = envelope["signature"]
        problem = bytes_signature_problem(message, signature)
        if problem:
            raise Unauthorized(f"report signature refused: {problem}", code="bad_signature")
        try:
            report = parse_report(envelope["report"])
        except ReportError as exc:
            kind = PayloadTooLarge if exc.code == "evidence_too_large" else BadRequest
            raise kind(str(exc), code=exc.code) from None
        self._check_window(report)
        ip = str(report.ip)
        self._check_ownership(report, ip)
        reporter = signature["key"]
        standing = evaluate_credentials(credentials, reporter, self.anchor, self.now) if credentials else _ANONYMOUS
        category = report.category.slug
        answer = {"report_id": report.report_id, "status": "received", "ip": ip, "category": category,
                  "received": self.received, "rank": standing.rank}
        if standing.problem:
            answer["credentials_ignored"] = standing.problem
        # stored as signed: the canonical report (what the signature covers) beside the signature itself,
        # whose values are ASCII (they decoded as base64url) and so safe for orjson
        text = message.decode()
        stored = '{"report":' + text + ',"signature":' + orjson.dumps(signature).decode() + (
            ',"credentials":' + json.dumps(credentials) if credentials else "") + "}"
        if len(stored) + len(message) - len(text) > MAX_STORED_ENVELOPE:  # the report's non-ASCII counts in UTF-8
            raise PayloadTooLarge(f"report and credentials exceed {MAX_STORED_ENVELOPE} bytes", code="report_too_large")
        record = ReportRecord(report.report_id, hashlib.sha256(message).hexdigest(), ip, category, reporter,
                              standing.rank, report.observed, self.now, stored, orjson.dumps(answer).decode())
        return Admitted(record, answer)

    def _check_window(self, report: Report) -> None:
        if self.earliest <= report.observed <= self.latest:
            return
        limits = self.node.settings
        if report.observed > self.latest:
            raise Unprocessable(f"timestamp {report.body['timestamp']} is more than {limits.max_future_minutes} "
                                "minutes in the future", code="timestamp_in_future")
        raise Unprocessable(f"timestamp {report.body['timestamp']} is older than {limits.max_age_days} days",
                            code="timestamp_too_old")

    def _check_ownership(self, report: Report, ip: str) -> None:
        if ip in self.held:
            return
        referral = self.referred.get(ip)
        if referral is None:
            refuse_special(report.ip, self.node.settings.dev_mode)
            referral = refer_address(self.node, report.ip)  # one lookup, and its rule for an expired delegation
            if referral.match is not None and referral.match.role is Role.HELD:
                self.held.add(ip)
                return
            self.referred[ip] = referral
        where = ("a child node takes reports for it; follow the referral" if referral.match is not None
                 else "it is outside this node's space; resolve it from the root")
        raise Misdirected(f"this node does not take reports for {ip}: {where}", body=referral.to_json())


def admit(node: Node, envelope: Any, now: datetime) -> Admitted:
    """Every check of one envelope; raises the refusal, stores nothing."""
    return Checks(node, now).admit(envelope)


def limit_client(node: Node, client: str) -> None:
    allowance = node.reports.take({f"client:{client}": 1}, node.settings.client_rate_per_minute, 60,
                                  node.clock.now())[f"client:{client}"]
    if not allowance.granted:
        raise TooManyRequests(f"too many requests from {client}; retry in {allowance.retry_after} s",
                              allowance.retry_after)


def submit(node: Node, envelopes: Sequence[Any]) -> list[Answer]:
    """Admit, rate-limit per reporter key, and record a batch of envelopes; the rate windows, the reports and
    their policy job commit together where the ports share a database.

    Policy runs afterwards from one job per batch, so intake answers as soon as the reports are safe."""
    now = node.clock.now()
    answers: list[Answer | None] = [None] * len(envelopes)
    admitted: dict[int, Admitted] = {}
    checks = Checks(node, now)
    for index, envelope in enumerate(envelopes):
        try:
            admitted[index] = checks.admit(envelope)
        except NodeError as error:
            answers[index] = Answer.refusal(error)
    with node.unit_of_work():  # rate windows, reports and the policy job: one commit where the ports allow
        per_key = Counter(item.record.reporter for item in admitted.values())
        allowances = node.reports.take({f"key:{key}": count for key, count in per_key.items()},
                                       node.settings.key_rate_per_minute, 60, now)
        left = {bucket: allowance.granted for bucket, allowance in allowances.items()}
        for index, item in list(admitted.items()):  # each key's first reports in the batch, as many as it may send
            key = item.record.reporter
            if left[f"key:{key}"]:
                left[f"key:{key}"] -= 1
                continue
            retry = allowances[f"key:{key}"].retry_after
            answers[index] = Answer.refusal(TooManyRequests(
                f"reporter key {key[:20]}… sent too many reports; retry in {retry} s", retry))
            del admitted[index]
        order = list(admitted)
        outcomes = node.reports.record_reports([admitted[i].record for i in order],
                                               int(node.tally.count_window_hours * 3600))
        fresh = sorted({(admitted[i].record.ip, admitted[i].record.category)
                        for i, (outcome, _) in zip(order, outcomes) if outcome is Outcome.NEW})
        if fresh:
            try:
                node.queue.enqueue(EVALUATE, {"cases": [list(case) for case in fresh]})
            except Exception:  # the reports are stored and answered; policy runs again on the next report
                log.exception("could not queue policy evaluation for %d case(s)", len(fresh))
    for index, (outcome, answer_json) in zip(order, outcomes):
        if outcome is Outcome.CONFLICT:
            answers[index] = Answer.refusal(Conflict(
                f"report_id {admitted[index].record.report_id} was already used for a different report",
                code="replay_conflict"))
        elif outcome is Outcome.NEW:
            answers[index] = Answer(202, admitted[index].answer)
        else:
            answers[index] = Answer(200, json.loads(answer_json))
    return answers


def parse_batch(body: Any) -> list:
    reports = body.get("reports") if isinstance(body, dict) else None
    if not isinstance(reports, list):
        raise BadRequest("a batch is an object with a list 'reports' of envelopes", code="bad_batch")
    if len(reports) > MAX_BATCH:
        raise PayloadTooLarge(f"a batch holds at most {MAX_BATCH} reports, not {len(reports)}", code="batch_too_large")
    return reports
