"""Verification (DESIGN.md §4): when to scan, what may be scanned, and what a verdict changes.

A check only ever targets an address this node holds and has not delegated away, never special-purpose
space outside dev mode, and at most once per address per cool-down, so a flood of reports never turns
the node into a scanner of other people's hosts. Jobs run at least once; the verification or threshold id
and a record per action make their effects happen once.
"""
from __future__ import annotations

import json
import logging
import secrets
import uuid
from collections import Counter
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from ..checks.open_proxy import DEFAULT_PROXY_PORTS
from ..checks.open_relay import DEFAULT_RELAY_PORTS
from ..checks.result import CheckResult, Verdict
from ..protocol.encoding import format_time
from ..protocol.prefixes import IPAddress, parse_ip, special_purpose
from .actions import run_actions
from .node import Node
from .ports import Case, Role

VERIFY = "verify"
THRESHOLD = "threshold"
EVALUATE = "evaluate"
REPUTATION_FACTORS = {"confirmed": 1.25, "refuted": 0.5}
# Cases that new reports may have verified (again): a confirmed case needs no new scan, a verifying one has its
# check queued, and a resolved one is first reopened as received. The scan cool-down still applies.
VERIFIABLE = ("received", "inconclusive", "refuted")
# Longer than a verify job lives: five receives of 12 minutes on SQS, five leases of 5 minutes and their back-offs
# locally. A case verifying longer than this lost its job (to the dead letters, or a crash before it was queued).
VERIFICATION_OVERDUE = timedelta(hours=2)
CANARY_TTL = timedelta(minutes=10)
REPORTED_PORTS_CHECKED = 4   # at most this many ports that reporters named, beside the check's usual ones

log = logging.getLogger("netimmune.verification")


def scope_refusal(node: Node, ip: IPAddress) -> str | None:
    """Why this node must not probe ip, or None when it may."""
    reserved = special_purpose(ip)
    if reserved and not node.settings.dev_mode:
        return f"{ip} is special-purpose space ({reserved})"
    match = node.delegations.longest_match(ip)
    if match is None:
        return f"{ip} is outside the space this node holds"
    if match.role is Role.GRANTED:
        return f"{ip} is delegated to a child node ({match.delegation.prefix})"
    if match.expired(node.clock.now()):
        return f"{ip} is in {match.delegation.prefix}, which this node held until {match.fields['not_after']}"
    return None


def evaluate(node: Node, payload: dict) -> None:
    """The evaluate job intake queues once per batch: policy for the cases that got new reports."""
    after_intake(node, [tuple(case) for case in payload["cases"]])


def verifiable(case: Case, now: datetime) -> bool:
    """Whether new reports may have this case verified: see VERIFIABLE; a verifying case once its verification is
    overdue, so a lost job does not leave the case unverified for good."""
    if case.status == "verifying":
        return case.awaiting_since is None or now - case.awaiting_since > VERIFICATION_OVERDUE
    return case.status in VERIFIABLE


def after_intake(node: Node, cases: Iterable[tuple[str, str]]) -> None:
    """Apply policy to cases that just received new reports: verify at one threshold, act at another."""
    now = node.clock.now()
    for ip, category in dict.fromkeys(cases):
        case = node.reports.get_case(ip, category)
        if case is None:
            continue
        score = node.tally.score(case, now)
        rule = node.policy.rule_for(ip, category)
        if rule.checks and score >= rule.verify_at and verifiable(case, now):
            request_verification(node, ip, category)
        if rule.on_threshold and score >= rule.alert_at and node.verifications.fire_threshold_once(ip, category):
            node.queue.enqueue(THRESHOLD, {"threshold_id": uuid.uuid4().hex, "ip": ip, "category": category,
                                           "score": score})


def threshold_reached(node: Node, payload: dict) -> None:
    """The threshold job: a case's score reached the rule's alert_at (once per case until it is resolved)."""
    ip, category, score = payload["ip"], payload["category"], payload["score"]
    run_id = payload.get("threshold_id") or uuid.uuid4().hex  # a job queued before the id existed runs as it did
    rule = node.policy.rule_for(ip, category)
    run_actions(node, rule.on_threshold, run_id=run_id, ip=ip, category=category, score=score, verdict=None,
                summary=f"weighted score {score:.2f} reached the policy threshold {rule.alert_at:g}")


def request_verification(node: Node, ip: str, category: str) -> str | None:
    """Queue one verification if the scope guard and the per-address cool-down allow; its id, or None."""
    if scope_refusal(node, parse_ip(ip)):
        return None
    if not node.verifications.claim_scan(ip, node.clock.now(), node.settings.scan_cooldown_seconds):
        return None
    verification_id = uuid.uuid4().hex
    if not node.reports.await_verification(ip, category, verification_id, node.clock.now()):
        return None
    node.queue.enqueue(VERIFY, {"verification_id": verification_id, "ip": ip, "category": category})
    return verification_id


class StoreCanary:
    """The open-proxy canary: a nonce this node issued, hit when a request through the suspect arrives."""

    def __init__(self, node: Node, ip: str):
        self.node, self.ip = node, ip

    def new_nonce(self) -> str:
        nonce = secrets.token_urlsafe(18)
        self.node.verifications.register_canary(nonce, self.ip, self.node.clock.now() + CANARY_TTL)
        return nonce

    def url(self, nonce: str) -> str:
        return f"{self.node.settings.endpoint}/v1/canary/{nonce}"

    async def was_hit(self, nonce: str) -> bool:
        return self.node.verifications.canary_hit(nonce)


def reported_ports(node: Node, ip: str, category: str) -> tuple[int, ...]:
    """The ports the case's reports name (`source_port`), those most reporters named first: a proxy on 3129 is
    not found by probing the usual ports alone, and refuting it would halve its honest reporters' reputation.
    Reporters are counted, not reports, so one key repeating other ports cannot crowd the true one out."""
    named: set[tuple[int, str]] = set()
    for record in node.reports.case_reports(ip, category):
        port = json.loads(record.envelope_json)["report"].get("source_port")
        if isinstance(port, int) and not isinstance(port, bool) and 0 < port < 65536:
            named.add((port, record.reporter))
    reporters = Counter(port for port, _ in named)
    return tuple(sorted(reporters, key=lambda port: (-reporters[port], port))[:REPORTED_PORTS_CHECKED])


def check_options(node: Node, ip: str, category: str) -> dict[str, dict[str, Any]]:
    """Each check's options; the check named like the case's category also probes the ports reporters named."""
    s = node.settings
    ports = {"open-proxy": s.proxy_ports or DEFAULT_PROXY_PORTS, "open-relay": s.relay_ports or DEFAULT_RELAY_PORTS,
             "port-scan": s.scan_ports}
    if category in ("open-proxy", "open-relay"):
        ports[category] = tuple(dict.fromkeys((*reported_ports(node, ip, category), *ports[category])))
    options: dict[str, dict[str, Any]] = {name: {"ports": p} if p else {} for name, p in ports.items()}
    options["open-proxy"].update(canary=StoreCanary(node, ip), timeout=s.check_timeout)
    options["open-relay"]["timeout"] = s.check_timeout
    options["open-resolver"] = {"qname": s.resolver_qname, "timeout": s.check_timeout,
                                **({"port": s.resolver_port} if s.resolver_port else {})}
    return options


def combine(results: list[CheckResult]) -> str:
    """Confirmed if any check proved it; refuted only if every check refuted it."""
    verdicts = {r.verdict for r in results}
    if Verdict.CONFIRMED in verdicts:
        return Verdict.CONFIRMED.value
    if verdicts == {Verdict.REFUTED}:
        return Verdict.REFUTED.value
    if verdicts == {Verdict.ERROR}:
        return Verdict.ERROR.value
    return Verdict.INCONCLUSIVE.value


def verify(node: Node, payload: dict) -> None:
    """The verify job: probe once, record once, act once, however often the job is delivered."""
    verification_id, ip, category = payload["verification_id"], payload["ip"], payload["category"]
    recorded = node.verifications.verification(verification_id)
    if recorded is None:
        case = node.reports.get_case(ip, category)
        if case is not None and case.awaiting not in (None, verification_id):
            log.info("verification %s of %s %s skipped: the case awaits a newer one", verification_id, ip, category)
            return
        rule = node.policy.rule_for(ip, category)
        refusal = scope_refusal(node, parse_ip(ip))
        if refusal:
            results: list[CheckResult] = []
            verdict, summary = Verdict.ERROR.value, f"not probed: {refusal}"
        else:
            results = node.scanner.scan(ip, rule.checks, check_options(node, ip, category))
            verdict = combine(results)
            summary = "; ".join(r.summary for r in results)
        result = {"verdict": verdict, "summary": summary, "checked_at": format_time(node.clock.now()),
                  "checks": [r.to_json() for r in results]}
        node.verifications.record_verification(verification_id, ip, category, verdict, result,
                                               REPUTATION_FACTORS.get(verdict), node.clock.now())
        recorded = node.verifications.verification(verification_id)
    if recorded["actions_done"]:
        return
    rule = node.policy.rule_for(ip, category)
    actions = {"confirmed": rule.on_confirmed, "refuted": rule.on_refuted}.get(recorded["verdict"], ())
    if actions:
        case = node.reports.get_case(ip, category)
        score = node.tally.score(case, node.clock.now()) if case else 0.0
        run_actions(node, actions, run_id=verification_id, ip=ip, category=category, score=score,
                    verdict=recorded["verdict"], summary=recorded["result"]["summary"])
    node.verifications.mark_actions_done(verification_id)
