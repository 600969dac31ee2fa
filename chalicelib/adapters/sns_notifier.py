"""Alerts on AWS: published to the organisation's SNS topic, whose subscribers the org file names.

One publish reaches every subscriber in the form it reads: email subscribers get the subject and the
whole body, SMS subscribers the short form (SNS picks the `email` or `sms` entry of the JSON message).
SNS wants a subject in ASCII, on one line and under 100 characters; the SMS text is kept to ASCII as
well, since one character outside the GSM alphabet (an ellipsis, a dash) shrinks a text message from
160 characters to 70.
"""
from __future__ import annotations

import json
import unicodedata

from ..core.alerts import SMS_LIMIT
from ..core.ports import Alert

SUBJECT_LIMIT = 99  # SNS refuses a subject of 100 characters or more
# The topic's display name, which SNS writes with "> " before every text message it sends through the topic
# (and as the sender of its emails): the SMS text gets what is left of one message.
TOPIC_DISPLAY_NAME = "netimmune"
SMS_TEXT_LIMIT = SMS_LIMIT - len(TOPIC_DISPLAY_NAME + "> ")
_ASCII = str.maketrans({"—": "-", "–": "-", "‐": "-", "−": "-", "…": "...", "‘": "'", "’": "'",
                        "“": '"', "”": '"', "→": "->", "ß": "ss", "×": "x", "\u00a0": " "})


def ascii_line(text: str, limit: int) -> str:
    """text on one line in printable ASCII, cut to limit characters with "..." where it was longer."""
    folded = unicodedata.normalize("NFKD", text.translate(_ASCII)).encode("ascii", "ignore").decode()
    line = " ".join("".join(c if c.isprintable() else " " for c in folded).split())
    return line if len(line) <= limit else line[:limit - 3].rstrip() + "..."


def sns_message(alert: Alert) -> dict:
    """The Publish parameters for one alert (without the topic)."""
    attributes = {"kind": alert.kind, "ip": alert.ip, "category": alert.category}
    return {
        "Subject": ascii_line(alert.subject, SUBJECT_LIMIT) or "netimmune alert",
        "MessageStructure": "json",
        "Message": json.dumps({"default": alert.body, "email": alert.body,
                               "sms": ascii_line(alert.short, SMS_TEXT_LIMIT)}),
        # kind, ip and category let a subscription's filter policy choose (say, no tickets by SMS);
        # Transactional asks SNS to deliver texts for reliability rather than cost.
        "MessageAttributes": {
            **{name: {"DataType": "String", "StringValue": value} for name, value in attributes.items() if value},
            "AWS.SNS.SMS.SMSType": {"DataType": "String", "StringValue": "Transactional"},
        },
    }


class SNSNotifier:
    def __init__(self, client, topic_arn: str):
        self.client = client
        self.topic_arn = topic_arn

    def send(self, alert: Alert) -> None:
        self.client.publish(TopicArn=self.topic_arn, **sns_message(alert))
