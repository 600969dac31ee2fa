"""The ARF email around an X-ARF report: the parts an abuse desk's parser and a person each need."""
from __future__ import annotations

import email
import json
from datetime import datetime, timezone
from email import policy
from email.utils import parsedate_to_datetime

import pytest

from chalicelib.protocol.arf import build_arf_email, explain_report, report_title
from chalicelib.protocol.categories import by_slug
from chalicelib.protocol.report import Evidence, build_report
from chalicelib.protocol.xarf import xarf_report

SENT = datetime(2026, 11, 26, 12, 5, tzinfo=timezone.utc)
REPORTER = {"org": "Example NOC", "contact": "noc@example.org", "domain": "example.org"}


def document(slug: str = "open-relay", **options) -> dict:
    body = build_report(by_slug(slug), "203.0.113.25", REPORTER, datetime(2026, 11, 26, 11, 40, tzinfo=timezone.utc),
                        evidence=(Evidence("text/plain", b"RCPT TO:<x@example.com> 250 ok\n", "SMTP transcript"),),
                        **options)
    return xarf_report(body)


def reparse(message) -> email.message.EmailMessage:
    """Through bytes and back, as the receiving side sees it."""
    return email.message_from_bytes(message.as_bytes(), policy=policy.default)


def test_email_is_a_feedback_report_with_three_parts_in_order() -> None:
    message = reparse(build_arf_email(document(), "abuse@example.net", "noc@example.org", "Example NOC", now=SENT))
    assert message.get_content_type() == "multipart/report"
    assert message.get_param("report-type") == "feedback-report"
    assert [part.get_content_type() for part in message.iter_parts()] == [
        "text/plain", "message/feedback-report", "application/json"]
    assert message["From"] == "Example NOC <noc@example.org>"
    assert message["MIME-Version"] == "1.0"


def test_feedback_report_names_xarf_the_source_and_when_it_was_seen() -> None:
    """`Feedback-Type: xarf` as X-ARF's email transport asks; Arrival-Date is the observation time."""
    message = reparse(build_arf_email(document(), "abuse@example.net", "noc@example.org", now=SENT))
    feedback = next(part for part in message.iter_parts() if part.get_content_type() == "message/feedback-report")
    fields = email.message_from_bytes(feedback.get_content(), policy=policy.default)
    assert fields["Feedback-Type"] == "xarf"
    assert fields["Version"] == "1"
    assert fields["User-Agent"].startswith("netimmune/")
    assert fields["Source-IP"] == "203.0.113.25"
    assert parsedate_to_datetime(fields["Arrival-Date"]) == datetime(2026, 11, 26, 11, 40, tzinfo=timezone.utc)


def test_json_attachment_round_trips_the_xarf_document() -> None:
    report = document(port=25)
    message = reparse(build_arf_email(report, "abuse@example.net", "noc@example.org", now=SENT))
    attachment = next(part for part in message.iter_attachments() if part.get_content_type() == "application/json")
    assert attachment.get_filename() == "xarf.json"
    assert attachment.get_param("name") == "xarf.json"
    assert attachment["Content-Transfer-Encoding"] == "base64"
    assert json.loads(attachment.get_content()) == report


def test_explanation_says_the_owner_is_not_on_netimmune_and_what_was_seen() -> None:
    report = document(comment="Relays for any sender since 11:00 UTC")
    text = reparse(build_arf_email(report, "abuse@example.net", "noc@example.org", now=SENT)).get_body(("plain",))
    content = " ".join(text.get_content().split())
    assert "does not run a netimmune node" in content
    assert "Open mail relay" in content and "203.0.113.25" in content
    assert "Relays for any sender since 11:00 UTC" in content
    assert report["report_id"] in content


def test_the_report_id_is_never_split_across_lines() -> None:
    """The id a reader copies stays on one line; textwrap breaks at a hyphen between letters ("bb-cd"), so a
    random id was split now and then."""
    report = document(report_id="a9a254bb-cd3c-4147-b786-114c5ff159c4")
    text = reparse(build_arf_email(report, "abuse@example.net", "noc@example.org", now=SENT)).get_body(("plain",))
    assert any(report["report_id"] in line for line in text.get_content().splitlines())


def test_subject_and_message_id_name_the_report() -> None:
    report = document()
    message = build_arf_email(report, "abuse@example.net", "Example NOC <noc@example.org>", now=SENT)
    assert message["Message-ID"] == f"<{report['report_id']}@example.org>"
    assert message["Subject"] == "[X-ARF] Open mail relay at 203.0.113.25 (owner not on netimmune)"


def test_given_text_replaces_the_explanation() -> None:
    message = reparse(build_arf_email(document(), "abuse@example.net", "noc@example.org",
                                      human_text="Please look at 203.0.113.25.\n", now=SENT))
    assert message.get_body(("plain",)).get_content() == "Please look at 203.0.113.25.\n"


def test_header_injection_through_an_address_is_refused() -> None:
    """The recipient comes from registry data; a line break in it must not add a header."""
    with pytest.raises(ValueError):
        build_arf_email(document(), "abuse@example.net\r\nBcc: someone@example.com", "noc@example.org", now=SENT)


def test_title_falls_back_to_the_xarf_category_when_no_netimmune_tag() -> None:
    report = document("ssh-brute-force") | {"tags": []}
    assert report_title(report) == "Brute-force login"
    assert report_title(document("ssh-brute-force")) == "SSH brute force"
    assert "Brute-force login" in explain_report(report)
