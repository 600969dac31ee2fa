"""X-ARF v4 documents from reports and cases, checked against the rules of the X-ARF core schema."""
from __future__ import annotations

import base64
import json
from datetime import datetime, timedelta, timezone

import pytest

from chalicelib.protocol.categories import CATEGORIES, by_slug
from chalicelib.protocol.report import Evidence, build_report
from chalicelib.protocol.xarf import TAG_PATTERN, export_case, xarf_report, xarf_tags

OBSERVED = datetime(2026, 11, 26, 9, 0, tzinfo=timezone.utc)
NOC = {"org": "Example NOC", "contact": "noc@example.org", "domain": "example.org"}
HONEYPOT = {"org": "Example Honeypots", "contact": "traps@example.com", "domain": "example.com"}
OWNER = {"org": "Example Hosting", "contact": "abuse@example.net", "domain": "example.net"}
CORE = ("xarf_version", "report_id", "timestamp", "reporter", "sender", "source_identifier", "category", "type")


def report(reporter: dict = NOC, minutes: int = 0, evidence: bytes = b"CONNECT via 192.0.2.7:8080 -> 200\n",
           **options) -> dict:
    return build_report(by_slug("open-proxy"), "192.0.2.7", reporter, OBSERVED + timedelta(minutes=minutes),
                        evidence=(Evidence("text/plain", evidence, "proxy log"),), **options)


def case(reports: list[dict], verification: dict | None = None) -> dict:
    """A case as core.cases.case_summary gives it."""
    return {"ip": "192.0.2.7", "category": "open-proxy", "status": "confirmed", "score": 3.5, "reports": len(reports),
            "first_seen": min(r["timestamp"] for r in reports), "last_seen": max(r["timestamp"] for r in reports),
            "reporters": [], "verification": verification}


VERIFICATION = {"verdict": "confirmed", "summary": "canary fetched through 192.0.2.7:8080 (http)",
                "checked_at": "2026-11-26T09:05:00+00:00",
                "checks": [{"check": "open-proxy", "target": "192.0.2.7", "verdict": "confirmed",
                            "summary": "canary fetched through 192.0.2.7:8080 (http)",
                            "transcript": ["GET http://127.0.0.1/v1/canary/abc HTTP/1.1", "HTTP/1.1 200 OK"],
                            "details": {"port": 8080}}]}


def assert_xarf_core(document: dict) -> None:
    """The core schema's rules that a netimmune export could break."""
    assert all(field in document for field in CORE)
    for party in (document["reporter"], document["sender"]):
        assert sorted(party) == ["contact", "domain", "org"]
    assert all(TAG_PATTERN.match(tag) for tag in document["tags"]) and len(document["tags"]) <= 20
    assert len(document["evidence"]) <= 50
    for item in document["evidence"]:
        assert set(item) <= {"content_type", "payload", "hash", "description", "size"}
        assert len(item.get("description", "")) <= 500
        base64.b64decode(item["payload"], validate=True)
    assert len(document.get("description", "")) <= 1000
    assert json.loads(json.dumps(document)) == document


def test_report_becomes_an_xarf_document_sent_by_its_reporter() -> None:
    body = report(port=8080, comment="open to the world", confidence=0.9)
    document = xarf_report(body)
    assert_xarf_core(document)
    assert document["sender"] == document["reporter"] == NOC
    assert (document["category"], document["type"], document["service"]) == ("vulnerability", "open_service", "proxy")
    assert (document["source_port"], document["confidence"]) == (8080, 0.9)
    assert document["description"] == "open to the world"
    assert document["evidence"] == body["evidence"]


def test_whoever_passes_a_report_on_is_its_sender() -> None:
    assert xarf_report(report(), sender=OWNER)["sender"] == OWNER


@pytest.mark.parametrize("slug", sorted(CATEGORIES))
def test_every_category_tag_fits_the_xarf_tag_pattern(slug: str) -> None:
    """The RSIT tag's "/" is refused by the schema; it becomes "." and maps back."""
    category = by_slug(slug)
    tags = xarf_tags(build_report(category, "192.0.2.7", NOC, OBSERVED)["tags"])
    assert tags == [f"rsit:{category.rsit.replace('/', '.')}", f"netimmune:{slug}"]
    assert all(TAG_PATTERN.match(tag) for tag in tags)
    assert tags[0].removeprefix("rsit:").replace(".", "/") == category.rsit


def test_tags_the_schema_would_refuse_are_left_out() -> None:
    assert xarf_tags(["Campaign:Winter", "malware:emotet", "no-namespace", "malware:emotet"]) == ["malware:emotet"]


def test_port_zero_is_left_out_because_xarf_ports_start_at_one() -> None:
    assert "source_port" not in xarf_report(report(port=0))


def test_case_with_two_reports_exports_one_document_with_all_evidence_and_the_verification() -> None:
    first, second = report(NOC), report(HONEYPOT, minutes=30, evidence=b"proxy seen from trap 7\n")
    document = export_case(case([second, first], VERIFICATION), [second, first], sender=OWNER)
    assert_xarf_core(document)
    assert (document["source_identifier"], document["category"], document["type"]) == (
        "192.0.2.7", "vulnerability", "open_service")
    assert (document["reporter"], document["sender"]) == (NOC, OWNER)  # the earliest report's reporter
    assert (document["timestamp"], document["first_seen"], document["last_seen"]) == (
        "2026-11-26T09:00:00Z", "2026-11-26T09:00:00Z", "2026-11-26T09:30:00Z")
    verification, *evidence = document["evidence"]
    assert json.loads(base64.b64decode(verification["payload"])) == VERIFICATION
    assert verification["content_type"] == "application/json" and "confirmed" in verification["description"]
    assert [item["payload"] for item in evidence] == [first["evidence"][0]["payload"], second["evidence"][0]["payload"]]
    assert first["report_id"] in evidence[0]["description"] and "Example Honeypots" in evidence[1]["description"]
    assert "2 report(s) from 2 reporter(s)" in document["description"]
    assert "Verification: confirmed" in document["description"]
    assert "rsit:vulnerable.potentially-unwanted-accessible" in document["tags"]


def test_unchanged_case_exports_under_the_same_report_id() -> None:
    """A consumer that gets the same export twice can tell it is a duplicate; a grown case is a new report."""
    reports = [report(), report(HONEYPOT, minutes=30)]
    again = export_case(case(reports), list(reversed(reports)))["report_id"]
    assert export_case(case(reports), reports)["report_id"] == again
    grown = reports + [report(minutes=45)]
    assert export_case(case(grown), grown)["report_id"] != again


def test_evidence_is_carried_once_and_within_the_schema_limit() -> None:
    reports = [report(minutes=i, evidence=f"line {i // 2}\n".encode()) for i in range(120)]
    evidence = export_case(case(reports, VERIFICATION), reports)["evidence"]
    payloads = [item["payload"] for item in evidence[1:]]
    assert len(evidence) == 50 and len(set(payloads)) == len(payloads)


def test_case_without_reports_is_refused() -> None:
    with pytest.raises(ValueError, match="no reports"):
        export_case(case([report()]), [])
