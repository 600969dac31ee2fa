"""Stand-alone X-ARF v4 documents from netimmune reports and cases, for tools that speak X-ARF.

A netimmune report body already uses the X-ARF v4 core field names (DESIGN.md §2). What changes on
the way out, checked against `schemas/v4/xarf-core.json` of github.com/xarf/xarf-spec:
- `sender`, required by the current core schema, is the reporter unless someone else passes the report on.
- Tags must match the schema's `namespace:predicate` pattern, whose predicate may not contain "/". The
  RSIT tag `rsit:<taxonomy>/<type>` is therefore written `rsit:<taxonomy>.<type>`; RSIT names never
  contain a dot, so the spelling maps back. `netimmune:<category>` fits as it is and stays: it tells
  apart categories that share an X-ARF type (ssh-brute-force and brute-force are both login_attack).
- Fields the schema limits are kept inside its limits (source port 1-65535, 20 tags, 50 evidence items,
  descriptions of 500 and 1,000 characters); evidence items carry only the fields the schema allows.
- Type-specific fields netimmune does not know (protocol, url, smtp_from, …) are not invented.

A case is exported as ONE document. X-ARF asks for one report per incident, but allows reporting
once a threshold is passed, and a case is exactly that: many observations of one address doing one
thing, scored until it crossed a threshold. The document carries the verification result and the
evidence of every report, each item saying which report and reporter it came from.
"""
from __future__ import annotations

import base64
import json
import re
import uuid

from .categories import RSIT_TAG, by_slug
from .report import CATEGORY_TAG, XARF_VERSION

TAG_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_+-]*:[a-z0-9][a-z0-9_+-.]*$")  # verbatim from xarf-core.json
CONTACT_FIELDS = ("org", "contact", "domain")
EVIDENCE_FIELDS = ("content_type", "payload", "hash", "description")
MAX_TAGS = 20
MAX_EVIDENCE = 50
MAX_EVIDENCE_DESCRIPTION = 500
MAX_DESCRIPTION = 1000
CASE_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:netimmune:case")


def xarf_tags(tags: list[str]) -> list[str]:
    """Tags as the X-ARF schema accepts them: the RSIT tag respelled, any other misfit left out."""
    kept: list[str] = []
    for tag in tags:
        if tag.startswith(RSIT_TAG):
            tag = RSIT_TAG + tag[len(RSIT_TAG):].replace("/", ".")
        if TAG_PATTERN.match(tag) and tag not in kept:
            kept.append(tag)
    return kept[:MAX_TAGS]


def _contact(party: dict) -> dict:
    return {field: party.get(field, "") for field in CONTACT_FIELDS}


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _evidence_item(item: dict, note: str = "") -> dict:
    clean = {field: item[field] for field in EVIDENCE_FIELDS if item.get(field)}
    description = " ".join(part for part in (note, item.get("description", "")) if part)
    if description:
        clean["description"] = _clip(description, MAX_EVIDENCE_DESCRIPTION)
    return clean


def xarf_report(report_body: dict, sender: dict | None = None) -> dict:
    """One netimmune report body as an X-ARF v4 document; `sender` is whoever passes it on (default the reporter)."""
    document = {"xarf_version": report_body["xarf_version"], "report_id": report_body["report_id"],
                "timestamp": report_body["timestamp"], "reporter": _contact(report_body["reporter"]),
                "sender": _contact(sender or report_body["reporter"]),
                "source_identifier": report_body["source_identifier"]}
    if report_body.get("source_port"):  # X-ARF ports start at 1
        document["source_port"] = report_body["source_port"]
    document |= {"category": report_body["category"], "type": report_body["type"]}
    for field in ("service", "confidence"):
        if field in report_body:
            document[field] = report_body[field]
    if report_body.get("description"):
        document["description"] = _clip(report_body["description"], MAX_DESCRIPTION)
    document["evidence"] = [_evidence_item(item) for item in report_body.get("evidence", [])][:MAX_EVIDENCE]
    document["tags"] = xarf_tags(report_body.get("tags", []))
    return document


def _verification_item(verification: dict) -> dict:
    payload = json.dumps(verification, sort_keys=True, ensure_ascii=False).encode("utf-8")
    summary = f"netimmune verification by the network's own node: {verification.get('verdict', 'unknown')}"
    if verification.get("summary"):
        summary += f" ({verification['summary']})"
    return _evidence_item({"content_type": "application/json", "payload": base64.b64encode(payload).decode("ascii"),
                           "description": summary})


def _case_description(case: dict, reports: list[dict], title: str) -> str:
    reporters = {json.dumps(_contact(body["reporter"]), sort_keys=True) for body in reports}
    text = (f"{title} from {case['ip']}: {len(reports)} report(s) from {len(reporters)} reporter(s) "
            f"between {case['first_seen']} and {case['last_seen']}, gathered by netimmune "
            f"(case status {case['status']}, score {case['score']}).")
    verification = case.get("verification")
    if verification:
        text += f" Verification: {verification.get('verdict', 'unknown')}"
        text += f", {verification['summary']}." if verification.get("summary") else "."
    return _clip(text, MAX_DESCRIPTION)


def export_case(case_summary: dict, reports: list[dict], sender: dict | None = None) -> dict:
    """A case (as `core.cases.case_summary` gives it) and its report bodies as one X-ARF v4 document.

    The reporter is the earliest report's; `sender` is whoever exports (default that reporter). The same
    case exported again, unchanged, gets the same report_id, so a consumer can tell it is a duplicate.
    """
    if not reports:
        raise ValueError(f"case {case_summary['ip']} {case_summary['category']} has no reports to export")
    category = by_slug(case_summary["category"])
    reports = sorted(reports, key=lambda body: body["timestamp"])
    first_reporter = _contact(reports[0]["reporter"])
    identity = "|".join(str(case_summary[key]) for key in ("ip", "category", "first_seen", "last_seen"))
    evidence = [_verification_item(case_summary["verification"])] if case_summary.get("verification") else []
    seen: set[str] = set()
    for body in reports:
        for item in body.get("evidence", []):
            key = item.get("hash") or item.get("payload", "")
            if key not in seen and len(evidence) < MAX_EVIDENCE:
                seen.add(key)
                evidence.append(_evidence_item(item, f"[report {body['report_id']} from "
                                                     f"{body['reporter'].get('org') or 'an anonymous reporter'}]"))
    document = {"xarf_version": XARF_VERSION,
                "report_id": str(uuid.uuid5(CASE_NAMESPACE, f"{identity}|{len(reports)}")),
                "timestamp": case_summary["first_seen"], "reporter": first_reporter,
                "sender": _contact(sender) if sender else first_reporter,
                "source_identifier": case_summary["ip"], "category": category.xarf_category, "type": category.xarf_type}
    if category.xarf_service:
        document["service"] = category.xarf_service
    document |= {"first_seen": case_summary["first_seen"], "last_seen": case_summary["last_seen"],
                 "description": _case_description(case_summary, reports, category.title),
                 "evidence": evidence, "tags": xarf_tags([category.rsit_tag, CATEGORY_TAG + category.slug])}
    return document
