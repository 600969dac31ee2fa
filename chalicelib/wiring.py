"""The one place a node is assembled from its settings: Lambda handlers, `netimmune serve` and tests.

The AWS side (boto3, powertools' parameters and idempotency, the DynamoDB, SQS and SNS adapters) is imported
where a node on AWS first needs it: a local node, and every `netimmune` command, starts without it.
"""
from __future__ import annotations

import functools
import logging
import os
import threading
from collections.abc import Callable
from datetime import datetime, timezone

from .adapters.http_webhooks import HttpWebhookSender
from .adapters.notifiers import DEFAULT_RECIPIENTS, FanoutNotifier, OutboxNotifier, SmtpNotifier
from .adapters.sqlite_db import SQLiteDatabase
from .adapters.sqlite_queue import SQLiteJobQueue
from .adapters.sqlite_reports import SQLiteReportStore
from .adapters.sqlite_store import SQLiteDelegationStore, SQLiteTokenStore
from .adapters.sqlite_verification import SQLiteVerificationStore
from .checks.runner import ProbeScanner
from .core import jobs
from .core.node import Node
from .core.policy import DEFAULT_POLICY, load_policy
from .core.tally import TallyRules
from .observability import CountedNotifier, CountedVerifications, metrics
from .protocol.encoding import b64url_decode
from .protocol.keys import KeyPair
from .settings import ENV_PREFIX, Settings, SettingsError

log = logging.getLogger("netimmune.wiring")


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(timezone.utc)


def build_notifier(settings: Settings, clock):
    """Alerts always land in the outbox folder; with a smarthost they are mailed as well."""
    recipients = settings.alert_to or DEFAULT_RECIPIENTS
    outbox = OutboxNotifier(settings.outbox_path, sender=settings.alert_from, recipients=recipients, clock=clock)
    if not settings.smtp_host:
        return outbox
    return FanoutNotifier(outbox, SmtpNotifier(settings.smtp_host, settings.smtp_port, settings.alert_from,
                                               recipients))


def load_key(settings: Settings) -> KeyPair:
    """The node's key: from an SSM SecureString holding its seed in base64url (on AWS), else its key file."""
    if not settings.key_parameter:
        return KeyPair.load(settings.key_path)
    from aws_lambda_powertools.utilities import parameters

    seed = parameters.get_parameter(settings.key_parameter, decrypt=True)
    try:
        return KeyPair.from_seed(b64url_decode(seed.strip()))
    except ValueError:
        raise SettingsError(f"{ENV_PREFIX}KEY_PARAMETER: {settings.key_parameter} does not hold a 32-byte "
                            "Ed25519 seed in base64url") from None


def sqlite_ports(settings: Settings, clock) -> dict:
    db = SQLiteDatabase(settings.db_path)
    return {"delegations": SQLiteDelegationStore(db), "tokens": SQLiteTokenStore(db),
            "reports": SQLiteReportStore(db), "verifications": SQLiteVerificationStore(db),
            "queue": SQLiteJobQueue(db, clock=clock), "notifier": build_notifier(settings, clock),
            "unit_of_work": db.transaction}


def aws_ports(settings: Settings) -> dict:
    """DynamoDB, SQS and SNS through boto3's default session: the function's role and region on Lambda."""
    import boto3

    from .adapters.dynamodb_reports import DynamoDBReportStore
    from .adapters.dynamodb_store import DynamoDBDelegationStore, DynamoDBTokenStore
    from .adapters.dynamodb_verification import DynamoDBVerificationStore
    from .adapters.sns_notifier import SNSNotifier
    from .adapters.sqs_queue import SQSJobQueue

    dynamodb, table = boto3.client("dynamodb"), settings.table_name
    return {"delegations": DynamoDBDelegationStore(dynamodb, table), "tokens": DynamoDBTokenStore(dynamodb, table),
            "reports": DynamoDBReportStore(dynamodb, table),
            "verifications": DynamoDBVerificationStore(dynamodb, table),
            "queue": SQSJobQueue(boto3.client("sqs"), settings.verify_queue_url),
            "notifier": SNSNotifier(boto3.client("sns"), settings.alert_topic_arn)}


def build_node(settings: Settings, clock=None) -> Node:
    """SQLite, the job table and SMTP/outbox locally; DynamoDB, SQS and SNS with `store: dynamodb` (AWS).

    Either way the verification store and the notifier are wrapped to count verifications and alerts."""
    clock = clock or SystemClock()
    # the key and the policy first: a node that cannot start leaves no new database behind
    key = load_key(settings)
    policy = load_policy(settings.policy_path) if settings.policy_path else DEFAULT_POLICY
    for warning in unset_webhook_secrets(policy, os.environ):
        log.warning(warning)
    ports = aws_ports(settings) if settings.store == "dynamodb" else sqlite_ports(settings, clock)
    ports["verifications"] = CountedVerifications(ports["verifications"], metrics)
    ports["notifier"] = CountedNotifier(ports["notifier"], metrics)
    return Node(settings=settings, key=key, **ports, scanner=ProbeScanner(settings.max_concurrent_checks),
                policy=policy, clock=clock, tally=TallyRules(half_life_hours=settings.half_life_hours),
                webhook_sender=HttpWebhookSender(), webhook_secrets=webhook_secrets(policy, os.environ))


def webhook_secrets(policy, environ) -> dict[str, str]:
    """Each webhook's shared secret, from the environment variable the policy names for it."""
    return {name: environ[hook.secret_env] for name, hook in policy.webhooks.items() if environ.get(hook.secret_env)}


def unset_webhook_secrets(policy, environ) -> list[str]:
    """A warning per webhook whose secret variable is unset: said at start, not found at the first delivery."""
    return [f"webhook {name}: its secret variable {hook.secret_env} is not set, so every delivery to it will fail"
            for name, hook in policy.webhooks.items() if not environ.get(hook.secret_env)]


def run_job(node: Node, message: dict) -> None:
    """Run one job message as the SQS handler received it.

    On AWS each job_id runs once: a redelivered message (SQS delivers at least once) finds the job's record
    and returns, so it records one result and sends one alert; a job that raised left no record and runs
    again. A local node's job table leases each job to one worker, and the verify job is idempotent by its
    verification_id, so there the message runs as it comes."""
    if node.settings.store != "dynamodb":
        jobs.handle(node, message)
        return
    from .adapters.job_records import run_once

    run_once(node.settings.table_name, functools.partial(jobs.handle, node), message)


class NodeHolder:
    """Builds the node on first use (a Lambda cold start) unless one was handed in (serve, tests)."""

    def __init__(self, factory: Callable[[], Node]):
        self._factory = factory
        self._node: Node | None = None
        self._lock = threading.Lock()

    def get(self) -> Node:
        if self._node is None:
            with self._lock:
                if self._node is None:
                    self._node = self._factory()
        return self._node

    def set(self, node: Node) -> None:
        self._node = node

    def built(self) -> Node | None:
        """The node if it was built: what runs after a request (flushing its metrics) must not try again
        to build a node that just failed to build, and fail the answer with it."""
        return self._node
