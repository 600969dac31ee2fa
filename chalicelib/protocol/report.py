"""Abuse reports: X-ARF v4 core fields, evidence with checked hashes, and the signed envelope."""
from __future__ import annotations

import base64
import binascii
import hashlib
import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .categories import CATEGORIES, RSIT_TAG, Category
from .encoding import EncodingError, format_time, parse_time
from .keys import KeyPair
from .prefixes import AddressError, IPAddress, parse_ip
from .signing import sign_object

XARF_VERSION = "4.0.0"
CATEGORY_TAG = "netimmune:"
MAX_EVIDENCE_BYTES = 256 * 1024
MAX_TEXT = 4096
MAX_REPORTER_FIELD = 256
REQUIRED = ("xarf_version", "report_id", "timestamp", "reporter", "source_identifier", "category", "type")
OPTIONAL = ("source_port", "evidence", "confidence", "tags", "description", "service")
_REQUIRED = frozenset(REQUIRED)
_KNOWN = frozenset(REQUIRED + OPTIONAL)
_UUID_TEXT = re.compile("[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


class ReportError(ValueError):
    """A report that is not well formed; `code` names the rule it breaks."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Evidence:
    content_type: str
    payload: bytes
    description: str = ""

    def to_json(self) -> dict:
        return {"content_type": self.content_type, "payload": base64.b64encode(self.payload).decode("ascii"),
                "hash": "sha256:" + hashlib.sha256(self.payload).hexdigest(), "description": self.description}


@dataclass(frozen=True)
class Report:
    """A report that passed every format rule; `body` is exactly what was signed."""

    report_id: str
    ip: IPAddress
    category: Category
    observed: datetime
    body: dict
    evidence_bytes: int


def build_report(category: Category, ip: str, reporter: dict, observed: datetime, *,
                 evidence: tuple[Evidence, ...] = (), port: int | None = None, comment: str | None = None,
                 confidence: float | None = None, report_id: str | None = None) -> dict:
    body: dict[str, Any] = {
        "xarf_version": XARF_VERSION, "report_id": report_id or str(uuid.uuid4()),
        "timestamp": format_time(observed), "reporter": reporter, "source_identifier": str(parse_ip(ip)),
        "category": category.xarf_category, "type": category.xarf_type,
        "evidence": [item.to_json() for item in evidence],
        "tags": [category.rsit_tag, CATEGORY_TAG + category.slug],
    }
    if category.xarf_service:
        body["service"] = category.xarf_service
    if port is not None:
        body["source_port"] = port
    if comment:
        body["description"] = comment
    if confidence is not None:
        body["confidence"] = confidence
    return body


def sign_envelope(report: dict, key: KeyPair, credentials: list | None = None) -> dict:
    envelope = {"report": report, "signature": sign_object(report, key)}
    if credentials:
        envelope["credentials"] = credentials
    return envelope


def _text(body: dict, field: str, limit: int = MAX_TEXT) -> str:
    value = body.get(field)
    if not isinstance(value, str) or not value or len(value) > limit:
        raise ReportError("bad_field", f"{field} must be a non-empty string of at most {limit} characters")
    return value


def _report_id(body: dict) -> str:
    """The UUID in canonical (lower-case) form; the regular expression takes the common case fast."""
    text = body["report_id"]
    if type(text) is str and _UUID_TEXT.fullmatch(text):
        return text.lower()
    try:
        report_id = str(uuid.UUID(_text(body, "report_id", 36)))
    except ValueError:
        raise ReportError("bad_field", "report_id must be a UUID") from None
    if report_id != text.lower():
        raise ReportError("bad_field", "report_id must be a UUID in its canonical form")
    return report_id


def _category(body: dict) -> Category:
    tags = body.get("tags", [])
    if not isinstance(tags, list) or len(tags) > 32:
        raise ReportError("bad_field", "tags must be a list of at most 32 short strings")
    named, rsit = [], []
    for tag in tags:
        if not isinstance(tag, str) or len(tag) > 200:
            raise ReportError("bad_field", "tags must be a list of at most 32 short strings")
        if tag.startswith(CATEGORY_TAG):
            named.append(tag[len(CATEGORY_TAG):])
        elif tag.startswith(RSIT_TAG):
            rsit.append(tag)
    if len(named) != 1 or named[0] not in CATEGORIES:
        raise ReportError("bad_category", f"tags must name exactly one category as {CATEGORY_TAG}<category> "
                          f"(one of {', '.join(sorted(CATEGORIES))})")
    category = CATEGORIES[named[0]]
    if body["category"] != category.xarf_category or body["type"] != category.xarf_type:
        raise ReportError("bad_category", f"X-ARF category/type {body['category']}/{body['type']} does not "
                          f"match {category.slug} ({category.xarf_category}/{category.xarf_type})")
    # the service tells the open-* categories apart (an X-ARF consumer reads an open relay from it), and
    # the RSIT tag is what a CSIRT files the report under: neither may say something else than the category
    if category.xarf_service and body.get("service") != category.xarf_service:
        raise ReportError("bad_category", f"{category.slug} reports carry service {category.xarf_service!r}, "
                          f"not {body.get('service')!r}")
    if rsit and rsit != [category.rsit_tag]:
        raise ReportError("bad_category", f"the rsit: tag of a {category.slug} report is {category.rsit_tag}")
    return category


def _evidence_size(items: Any) -> int:
    if not isinstance(items, list) or len(items) > 32:
        raise ReportError("bad_evidence", "evidence must be a list of at most 32 items")
    total = 0
    for index, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("payload"), str) \
                or not isinstance(item.get("content_type"), str) or not isinstance(item.get("hash"), str):
            raise ReportError("bad_evidence", f"evidence[{index}] needs content_type, payload and hash strings")
        if len(item["content_type"]) > 255 or not isinstance(item.get("description", ""), str) \
                or len(item.get("description", "")) > MAX_TEXT:
            raise ReportError("bad_evidence", f"evidence[{index}] needs a content_type of at most 255 characters "
                              f"and a description of at most {MAX_TEXT}")
        payload_text = item["payload"]
        total += len(payload_text) * 3 // 4 - (2 if payload_text.endswith("==") else payload_text.endswith("="))
        if total > MAX_EVIDENCE_BYTES:
            raise ReportError("evidence_too_large", f"evidence exceeds {MAX_EVIDENCE_BYTES} bytes")
        try:
            payload = base64.b64decode(item["payload"], validate=True)
        except (binascii.Error, ValueError):
            raise ReportError("bad_evidence", f"evidence[{index}].payload is not base64") from None
        if item["hash"] != "sha256:" + hashlib.sha256(payload).hexdigest():
            raise ReportError("evidence_hash_mismatch", f"evidence[{index}].hash does not match its payload")
    return total


def _reporter_problem(reporter: Any) -> bool:
    if not isinstance(reporter, dict):
        return True
    get = reporter.get
    org, contact, domain = get("org", ""), get("contact", ""), get("domain", "")
    return not (isinstance(org, str) and isinstance(contact, str) and isinstance(domain, str)
                and len(org) <= MAX_REPORTER_FIELD and len(contact) <= MAX_REPORTER_FIELD
                and len(domain) <= MAX_REPORTER_FIELD)


def parse_report(body: Any) -> Report:
    """Check every format rule of a report body; the signature is checked separately, before this."""
    if not isinstance(body, dict):
        raise ReportError("bad_report", "report must be an object")
    fields = body.keys()
    if not (fields >= _REQUIRED and fields <= _KNOWN):
        missing = [f for f in REQUIRED if f not in body]
        unknown = sorted(fields - _KNOWN)
        raise ReportError("bad_report", "report " + "; ".join(
            ([f"lacks {', '.join(missing)}"] if missing else []) + ([f"has unknown {', '.join(unknown)}"] if unknown else [])))
    if body["xarf_version"] != XARF_VERSION:
        raise ReportError("bad_version", f"xarf_version must be {XARF_VERSION}")
    report_id = _report_id(body)
    try:
        ip = parse_ip(_text(body, "source_identifier", 64))
        observed = parse_time(body["timestamp"])
    except (AddressError, EncodingError) as exc:
        raise ReportError("bad_field", str(exc)) from None
    if _reporter_problem(body["reporter"]):
        raise ReportError("bad_field", "reporter must be an object with org, contact and domain strings of at "
                          f"most {MAX_REPORTER_FIELD} characters")
    port = body.get("source_port")
    if port is not None and (type(port) is not int or not 0 <= port <= 65535):
        raise ReportError("bad_field", "source_port must be an integer from 0 to 65535")
    confidence = body.get("confidence")
    if confidence is not None and (type(confidence) not in (int, float) or not 0 <= confidence <= 1):
        raise ReportError("bad_field", "confidence must be a number from 0 to 1")
    if "description" in body:
        _text(body, "description")
    if "service" in body:
        _text(body, "service", 64)
    return Report(report_id, ip, _category(body), observed, body, _evidence_size(body.get("evidence", [])))
