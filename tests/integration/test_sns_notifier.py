"""The SNS notifier under moto: one publish reaches the topic's email and SMS subscribers, each in its form.

moto records what was published on the topic; what each subscriber receives is what moto's own
subscription picks from the JSON message for its protocol (`email`, `sms`, else `default`), as SNS does.
"""
from __future__ import annotations

import boto3
import pytest
from moto import mock_aws
from moto.core import DEFAULT_ACCOUNT_ID
from moto.sns.models import sns_backends

from chalicelib.adapters.sns_notifier import SMS_TEXT_LIMIT, SUBJECT_LIMIT, SNSNotifier, ascii_line
from chalicelib.core.alerts import compose_alert, compose_digest
from chalicelib.core.ports import Alert

REGION = "eu-west-1"
EMAIL = "noc@isp-a.example"
PHONE = "+15555550100"


@pytest.fixture
def topic(monkeypatch):
    """An alert topic with one email and one SMS subscriber, as the org file makes it."""
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    with mock_aws():
        client = boto3.client("sns")
        arn = client.create_topic(Name="netimmune-isp-a-alerts")["TopicArn"]
        client.subscribe(TopicArn=arn, Protocol="email", Endpoint=EMAIL)
        client.subscribe(TopicArn=arn, Protocol="sms", Endpoint=PHONE)
        yield SNSNotifier(client, arn)


def deliveries(arn: str) -> list[dict[str, tuple[str | None, str]]]:
    """Per publish, what each subscriber got: {endpoint: (subject, text)}."""
    backend = sns_backends[DEFAULT_ACCOUNT_ID][REGION]
    subscriptions, _ = backend.list_subscriptions_by_topic(arn)
    return [{sub.endpoint: (subject, sub._parse_message_structure(message, sub.protocol)) for sub in subscriptions}
            for _, message, subject, _, _ in backend.topics[arn].sent_notifications]


def published_attributes(arn: str) -> dict:
    [(_, _, _, attributes, _)] = sns_backends[DEFAULT_ACCOUNT_ID][REGION].topics[arn].sent_notifications
    return {name: value["Value"] for name, value in attributes.items()}


def confirmed_proxy_alert() -> Alert:
    return compose_alert(ip="198.51.100.7", category="open-proxy", score=12.34, verdict="confirmed",
                         actions=["blocked 7d", "operators alerted"], node_name="isp-a",
                         resolve_hint="https://reports.isp-a.example")


def test_alert_reaches_the_email_subscriber_whole_and_the_sms_subscriber_short(topic):
    """The email carries the subject and every line of the body; the text message the one-line form."""
    alert = confirmed_proxy_alert()
    topic.send(alert)
    [received] = deliveries(topic.topic_arn)
    assert received[EMAIL] == ("[netimmune] 198.51.100.7 confirmed open proxy - blocked 7d", alert.body)
    assert "curl -X POST" in alert.body and "Verdict:   confirmed" in alert.body
    subject, sms = received[PHONE]
    assert sms == "isp-a: 198.51.100.7 confirmed open proxy - blocked 7d, score 12.3"


def test_alert_carries_kind_address_and_category_for_subscription_filters(topic):
    """A filter policy on these can keep tickets or digests away from phones; SMS are sent as transactional."""
    topic.send(confirmed_proxy_alert())
    assert published_attributes(topic.topic_arn) == {
        "kind": "alert", "ip": "198.51.100.7", "category": "open-proxy", "AWS.SNS.SMS.SMSType": "Transactional"}


def test_digest_without_address_is_published_with_the_attributes_it_has(topic):
    digest = compose_digest([confirmed_proxy_alert()] * 3, window_minutes=15)
    topic.send(digest)
    [received] = deliveries(topic.topic_arn)
    assert received[EMAIL][1] == digest.body and received[PHONE][1] == ascii_line(digest.short, SMS_TEXT_LIMIT)
    assert published_attributes(topic.topic_arn)["kind"] == "digest"


def test_long_non_ascii_subject_and_text_are_made_acceptable_to_sns_and_one_sms(topic):
    """SNS refuses a subject of 100 characters or one outside ASCII; an SMS with one non-GSM character
    holds 70 characters instead of 160."""
    long = "Überprüfung – " + "ß→x " * 60
    topic.send(Alert(subject="Über\r\nBcc: " + long, body=long, short=long[:159] + "…"))
    [received] = deliveries(topic.topic_arn)
    subject, _ = received[EMAIL]
    _, sms = received[PHONE]
    for text, limit in ((subject, SUBJECT_LIMIT), (sms, SMS_TEXT_LIMIT)):
        assert len(text) <= limit and text.isascii() and text.isprintable() and text.endswith("...")
    assert subject.startswith("Uber Bcc: Uberprufung - ss->x ss->x") and sms.startswith("Uberprufung - ss->x")


def test_ascii_line_keeps_short_ascii_text_as_it_is():
    assert ascii_line("[netimmune] 192.0.2.1 open relay", 99) == "[netimmune] 192.0.2.1 open relay"
