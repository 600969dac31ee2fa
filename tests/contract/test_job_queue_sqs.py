"""The JobQueue port on SQS (moto): the part of the contract a plain queue can keep.

test_job_queue.py proves the LocalJobQueue contract (leases, retries, dead letters): on AWS SQS and the
Lambda event source do all of that, so the adapter's own contract is `enqueue` alone. What it must keep:
the message body is the `job_body` the handler parses, a delay is honoured (cut to SQS's 15 minutes,
which SQS would otherwise refuse), and the dedupe key travels with the message. A standard queue keeps
both copies of a deduplicated job; the handler's idempotency makes that harmless (test_sqs_handler.py).
"""
from __future__ import annotations

import boto3
import pytest
from moto import mock_aws

from chalicelib.adapters.local_worker import parse_job_body
from chalicelib.adapters.sqs_queue import DEDUPE_ATTRIBUTE, SQSJobQueue
from chalicelib.core.ports import Job

REGION = "eu-west-1"


@pytest.fixture
def sqs(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    with mock_aws():
        client = boto3.client("sqs")
        yield client, client.create_queue(QueueName="netimmune-test-verify")["QueueUrl"]


@pytest.fixture
def queue(sqs) -> SQSJobQueue:
    return SQSJobQueue(*sqs)


def receive(sqs) -> list[dict]:
    client, url = sqs
    return client.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0,
                                  MessageAttributeNames=["All"]).get("Messages", [])


def delayed(sqs) -> int:
    client, url = sqs
    attributes = client.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessagesDelayed"])
    return int(attributes["Attributes"]["ApproximateNumberOfMessagesDelayed"])


def test_enqueued_job_arrives_as_the_body_the_handler_parses(queue, sqs):
    """Whoever queues and whoever runs agree on one body: kind, payload and the id enqueue returned."""
    payload = {"verification_id": "v1", "ip": "192.0.2.1", "category": "open-proxy"}
    job_id = queue.enqueue("verify", payload)
    [message] = receive(sqs)
    assert parse_job_body(message["Body"]) == Job(job_id, "verify", payload)
    assert "MessageAttributes" not in message


def test_every_enqueue_is_a_new_job(queue, sqs):
    ids = {queue.enqueue("digest", {"window_start": 0}) for _ in range(3)}
    assert len(ids) == 3
    assert {parse_job_body(m["Body"]).job_id for m in receive(sqs)} == ids


def test_delayed_job_is_not_delivered_before_its_delay(queue, sqs):
    queue.enqueue("digest", {"window_start": 0}, delay_seconds=120)
    assert receive(sqs) == [] and delayed(sqs) == 1


def test_delay_beyond_fifteen_minutes_is_cut_to_what_sqs_accepts(queue, sqs):
    """SQS refuses DelaySeconds above 900; the job is queued with the longest delay it allows instead."""
    queue.enqueue("digest", {"window_start": 0}, delay_seconds=2 * 3600)
    assert receive(sqs) == [] and delayed(sqs) == 1


def test_dedupe_key_travels_as_an_attribute_and_a_standard_queue_keeps_both(queue, sqs):
    """Unlike the local job table, SQS cannot drop the second job: both arrive, each with its own id."""
    first = queue.enqueue("digest", {"window_start": 0}, dedupe_key="digest:0")
    second = queue.enqueue("digest", {"window_start": 0}, dedupe_key="digest:0")
    messages = receive(sqs)
    assert {parse_job_body(m["Body"]).job_id for m in messages} == {first, second}
    assert [m["MessageAttributes"][DEDUPE_ATTRIBUTE]["StringValue"] for m in messages] == ["digest:0", "digest:0"]
