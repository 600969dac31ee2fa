"""An X-ARF v4 report as an RFC 5965 (ARF) email, for owners of address space that runs no netimmune node.

The layout follows the X-ARF email transport (xarf.org/docs/email-transport), which extends ARF so
that an ARF parser needs little change to read it: `multipart/report; report-type=feedback-report`
(RFC 6522) with three parts —
1. text/plain for people: what was seen, and why it came by email rather than through netimmune;
2. message/feedback-report with `Feedback-Type: xarf`, `User-Agent` and `Version: 1`, plus the optional
   RFC 5965 fields that apply (`Source-IP`, and `Arrival-Date` for when the abuse was observed);
3. the X-ARF JSON as a base64 `application/json` attachment named xarf.json, where ARF has the message.

`Feedback-Type: xarf` is X-ARF's deliberate, unregistered value, so that an ARF robot that only knows
abuse/fraud/virus/other/not-spam leaves the message to a person (who reads part 1) instead of filing
a JSON attachment as a spam complaint.
"""
from __future__ import annotations

import json
import textwrap
from datetime import datetime, timezone
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, parseaddr

from .. import __version__
from .categories import CATEGORIES, from_xarf
from .encoding import parse_time
from .report import CATEGORY_TAG

FEEDBACK_TYPE = "xarf"
USER_AGENT = f"netimmune/{__version__}"
TEXT_WIDTH = 72


def report_title(xarf_report: dict) -> str:
    """What the address did, in words: from the netimmune category tag, else from the X-ARF category/type."""
    slugs = [tag[len(CATEGORY_TAG):] for tag in xarf_report.get("tags", []) if tag.startswith(CATEGORY_TAG)]
    category = CATEGORIES.get(slugs[0]) if slugs else None
    category = category or from_xarf(xarf_report["category"], xarf_report["type"], xarf_report.get("service"))
    return category.title if category else f"{xarf_report['category']}/{xarf_report['type']}"


def explain_report(xarf_report: dict) -> str:
    """The part for people: what was seen, who saw it, and that the owner is not on netimmune."""
    reporter = xarf_report["reporter"]
    title, ip = report_title(xarf_report), xarf_report["source_identifier"]
    who = reporter.get("org") or "A netimmune reporter"
    if reporter.get("contact"):
        who += f" <{reporter['contact']}>"
    port = f" (port {xarf_report['source_port']})" if xarf_report.get("source_port") else ""
    paragraphs = [
        f"Abuse report: {title} at {ip}",
        f"{who} reports that {ip}{port} was seen in this role: {title} (X-ARF "
        f"{xarf_report['category']}/{xarf_report['type']}), observed {xarf_report['timestamp']}.",
    ]
    if xarf_report.get("description"):
        paragraphs.append(f"The reporter's note: {xarf_report['description']}")
    paragraphs += [
        "Why this came by email: the network that holds this address does not run a netimmune node. "
        "netimmune delivers signed abuse reports to a report server run by whoever holds the address "
        "space; no such server is registered for this address, so the report was sent to the abuse "
        "contact that the Regional Internet Registry's RDAP service lists for the network.",
        f"The machine-readable report is attached as xarf.json (X-ARF v4, https://xarf.org) with "
        f"{len(xarf_report.get('evidence', []))} evidence item(s). Report ID: {xarf_report['report_id']}.",
    ]
    if reporter.get("contact"):
        paragraphs.append(f"Questions about this report: {reporter['contact']}")
    # report ids, addresses and URLs stay whole on one line: a reader copies them (textwrap would break at a hyphen)
    return "\n\n".join(textwrap.fill(paragraph, TEXT_WIDTH, break_on_hyphens=False, break_long_words=False)
                       for paragraph in paragraphs) + "\n"


def _feedback_fields(xarf_report: dict) -> EmailMessage:
    """The message/feedback-report body: RFC 5965 fields, written as a header block."""
    fields = EmailMessage()
    fields["Feedback-Type"] = FEEDBACK_TYPE
    fields["User-Agent"] = USER_AGENT
    fields["Version"] = "1"
    fields["Source-IP"] = xarf_report["source_identifier"]
    fields["Arrival-Date"] = format_datetime(parse_time(xarf_report["timestamp"]))
    return fields


def build_arf_email(xarf_report: dict, to: str, sender: str, reporter_name: str | None = None,
                    human_text: str | None = None, now: datetime | None = None) -> EmailMessage:
    """The X-ARF document as a three-part ARF email from `sender` to `to`.

    `human_text` replaces the explanation of part 1 (default `explain_report`). The Message-ID is the
    report id at the sender's domain, as X-ARF recommends, so a reply or a bounce names the report.
    """
    message = EmailMessage()
    message["From"] = formataddr((reporter_name or "", sender))
    message["To"] = to
    message["Subject"] = (f"[X-ARF] {report_title(xarf_report)} at {xarf_report['source_identifier']}"
                          f" (owner not on netimmune)")
    message["Date"] = format_datetime(now or datetime.now(timezone.utc))
    domain = parseaddr(sender)[1].rpartition("@")[2] or "localhost"
    message["Message-ID"] = f"<{xarf_report['report_id']}@{domain}>"
    message["MIME-Version"] = "1.0"
    message["Content-Type"] = "multipart/report; report-type=feedback-report"

    explanation = EmailMessage()
    explanation.set_content(human_text if human_text is not None else explain_report(xarf_report))
    feedback = EmailMessage()
    feedback.set_content(_feedback_fields(xarf_report), subtype="feedback-report", disposition="inline")
    document = EmailMessage()
    document.set_content(json.dumps(xarf_report, indent=2, ensure_ascii=False).encode("utf-8"),
                         maintype="application", subtype="json", cte="base64", filename="xarf.json")
    document.set_param("name", "xarf.json")
    for part in (explanation, feedback, document):
        del part["MIME-Version"]
        message.attach(part)
    return message
