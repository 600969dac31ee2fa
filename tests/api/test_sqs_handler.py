"""The `verify_worker` SQS handler through Chalice's test client: partial batch failures and redelivery.

A local node runs it on SQLite; a node wired for AWS (`store: dynamodb`) runs it under moto, with its
key from SSM, its tables in DynamoDB and its alerts on SNS, where powertools idempotency makes a
redelivered message run once.
"""
from __future__ import annotations

import uuid
from datetime import timedelta

import boto3
import pytest
from chalice.test import Client
from moto import mock_aws
from moto.core import DEFAULT_ACCOUNT_ID
from moto.sns.models import sns_backends

import app as node_app
from chalicelib.adapters.local_worker import job_body
from chalicelib.core.actions import DIGEST
from chalicelib.core.alerts import compose_alert
from chalicelib.core.ports import Job
from chalicelib.core.verification import THRESHOLD
from chalicelib.protocol.encoding import b64url_encode
from chalicelib.protocol.keys import KeyPair
from chalicelib.settings import Settings, SettingsError
from chalicelib.wiring import build_node
from tests.api.conftest import make_api
from tests.conftest import NOW, FixedClock

REGION = "eu-west-1"
TOPIC = "netimmune-test-alerts"
NODE_KEY = KeyPair.from_seed(b"\x05" * 32)
CASE = {"ip": "192.0.2.7", "category": "open-proxy", "score": 4.0}


def job(kind: str, payload: dict) -> str:
    return job_body(Job(uuid.uuid4().hex, kind, payload))


def sqs_event(client: Client, messages: dict[str, str]) -> dict:
    """An SQS event as Lambda delivers it, one record per message id and body."""
    event = client.events.generate_sqs_event(message_bodies=list(messages.values()), queue_name="netimmune-verify")
    for record, message_id in zip(event["Records"], messages):
        record["messageId"] = message_id
    return event


def run_worker(client: Client, messages: dict[str, str]) -> list[str]:
    """The message ids the handler reported back to the queue as failed."""
    response = client.lambda_.invoke("verify_worker", sqs_event(client, messages)).payload
    return [failure["itemIdentifier"] for failure in response["batchItemFailures"]]


def test_batch_with_one_failing_job_reports_only_that_message_back(tmp_path):
    """The event source retries what is reported back, so the two digests that went out are not sent again."""
    api = make_api(tmp_path)
    alert = compose_alert(ip="192.0.2.7", category="open-proxy", score=4.0, verdict=None, actions=[],
                          node_name="test", resolve_hint="http://127.0.0.1:9")
    windows = [NOW - timedelta(minutes=30), NOW - timedelta(minutes=15)]
    for start in windows:
        api.node.verifications.hold_for_digest(start, alert)
    failed = run_worker(api.client, {
        "first": job(DIGEST, {"window_start": windows[0].timestamp()}),
        "broken": job("no-such-kind", {}),
        "third": job(DIGEST, {"window_start": windows[1].timestamp()}),
    })
    assert failed == ["broken"]
    assert len(list((tmp_path / "node.outbox").glob("*.eml"))) == 2


@pytest.fixture
def aws_node(tmp_path, monkeypatch):
    """A node as the stack wires it: its settings from the environment the stack sets, AWS under moto."""
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    with mock_aws():
        table = f"netimmune-{uuid.uuid4().hex[:8]}"
        boto3.client("dynamodb").create_table(
            TableName=table, BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                  {"AttributeName": "sk", "AttributeType": "S"}])
        boto3.client("ssm").put_parameter(Name="/netimmune/test/node-key", Type="SecureString",
                                          Value=b64url_encode(bytes(NODE_KEY.signing_key)))
        settings = Settings.from_env({
            "NETIMMUNE_STORE": "dynamodb", "NETIMMUNE_TABLE": table,
            "NETIMMUNE_VERIFY_QUEUE_URL": boto3.client("sqs").create_queue(QueueName="netimmune-test")["QueueUrl"],
            "NETIMMUNE_ALERT_TOPIC_ARN": boto3.client("sns").create_topic(Name=TOPIC)["TopicArn"],
            "NETIMMUNE_KEY_PARAMETER": "/netimmune/test/node-key", "NETIMMUNE_ENDPOINT": "https://isp-a.example"})
        node = build_node(settings, clock=FixedClock())
        node_app.current.set(node)
        yield node


def alerts_published(node) -> int:
    return len(sns_backends[DEFAULT_ACCOUNT_ID][REGION].topics[node.settings.alert_topic_arn].sent_notifications)


def test_node_wired_for_aws_signs_with_the_key_from_ssm(aws_node):
    client = Client(node_app.app)
    assert client.http.get("/v1/node").json_body["key"] == NODE_KEY.public == aws_node.key.public


def test_redelivered_job_runs_once_and_alerts_once(aws_node):
    """SQS delivers at least once: the same message again must not alert again. A new job for the same case
    does alert, so it is the handler that ran the message once, not the job that happens to be idempotent."""
    client = Client(node_app.app)
    message = job(THRESHOLD, CASE)
    assert run_worker(client, {"delivery-1": message}) == []
    assert run_worker(client, {"delivery-2": message}) == []
    assert alerts_published(aws_node) == 1
    assert run_worker(client, {"another-job": job(THRESHOLD, CASE)}) == []
    assert alerts_published(aws_node) == 2


def test_job_that_failed_is_not_remembered_and_runs_again_when_redelivered(aws_node):
    """Idempotency records a job only once it succeeded: the retry of a failure is not skipped.
    (A digest with nothing held keeps the batch from failing whole, which powertools raises for.)"""
    client = Client(node_app.app)
    sns = boto3.client("sns")
    sns.delete_topic(TopicArn=aws_node.settings.alert_topic_arn)
    message = job(THRESHOLD, CASE)
    assert run_worker(client, {"while-sns-is-down": message, "empty-digest": job(DIGEST, {"window_start": 0})}) \
        == ["while-sns-is-down"]
    sns.create_topic(Name=TOPIC)
    assert run_worker(client, {"retry": message}) == []
    assert alerts_published(aws_node) == 1


def test_node_wired_for_aws_without_its_resources_is_refused_naming_what_is_missing():
    """A stack that forgot a variable fails at the cold start with the names to set, not at the first job."""
    with pytest.raises(SettingsError, match="NETIMMUNE_VERIFY_QUEUE_URL, NETIMMUNE_ALERT_TOPIC_ARN, "
                                            "NETIMMUNE_KEY_PARAMETER must be set"):
        Settings.from_env({"NETIMMUNE_STORE": "dynamodb", "NETIMMUNE_TABLE": "netimmune-test"})
