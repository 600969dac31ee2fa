"""What reporters and operators see of cases: status feedback, scored cases with evidence, resolving."""
from __future__ import annotations

import json

from ..protocol.categories import UnknownCategory, by_slug
from ..protocol.encoding import format_time
from .errors import BadRequest, NotFound
from .node import Node
from .ports import Case
from .targets import parse_target

STATUSES = ("received", "verifying", "confirmed", "refuted", "inconclusive", "resolved")


def report_status(node: Node, report_id: str) -> dict:
    """What a reporter may know: its case's status, never the evidence or other reporters."""
    record = node.reports.get_report(report_id.lower())
    if record is None:
        raise NotFound(f"no report {report_id} here")
    case = node.reports.get_case(record.ip, record.category)
    return {"report_id": record.report_id, "ip": record.ip, "category": record.category,
            "status": case.status if case else "received", "received": format_time(record.received)}


def case_summary(node: Node, case: Case) -> dict:
    now = node.clock.now()
    rules = node.tally
    return {"ip": case.ip, "category": case.category, "status": case.status,
            "score": round(rules.score(case, now), 4), "reports": case.reports,
            "first_seen": format_time(case.first_seen), "last_seen": format_time(case.last_seen),
            "reporters": [{"key": c.reporter, "rank": rules.effective_rank(c), "reputation": c.reputation,
                           "reports": c.reports, "weight": round(rules.weight(c, now), 4)}
                          for c in case.contributions],
            "verification": case.verification}


def list_cases(node: Node, status: str | None = None) -> list[dict]:
    if status is not None and status not in STATUSES:
        raise BadRequest(f"no status {status!r}; statuses are {', '.join(STATUSES)}", code="bad_status")
    return [case_summary(node, case) for case in node.reports.list_cases(status=status)]


def cases_for(node: Node, ip_text: str) -> list[dict]:
    """Every case of one address, with every report and its evidence."""
    ip = str(parse_target(ip_text, dev_mode=True))
    cases = node.reports.list_cases(ip=ip)
    if not cases:
        raise NotFound(f"no case for {ip}")
    return [{**case_summary(node, case),
             "evidence_reports": [{"report_id": r.report_id, "reporter": r.reporter, "rank": r.rank,
                                   "received": format_time(r.received),
                                   "report": json.loads(r.envelope_json)["report"]}
                                  for r in node.reports.case_reports(case.ip, case.category)]}
            for case in cases]


def resolve(node: Node, ip_text: str, category: str) -> dict:
    """The operator says the case is dealt with, so its block ends now, not when it would expire; a later
    confirmed verdict blocks again. The case is resolved first: if lifting the block fails, resolving again
    (idempotent) finishes it."""
    ip = str(parse_target(ip_text, dev_mode=True))
    try:
        by_slug(category)
    except UnknownCategory as exc:
        raise BadRequest(str(exc), code="bad_category") from None
    if not node.reports.set_case_status(ip, category, "resolved"):
        raise NotFound(f"no case for {ip} in category {category}")
    node.verifications.unblock(ip, category)
    return {"ip": ip, "category": category, "status": "resolved"}
