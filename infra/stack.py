"""One organisation's node on AWS (DESIGN.md §5): the Chalice app as API Gateway + Lambda, and what it runs on.

The app is packaged by Chalice's CDK construct as SAM; everything around it (table, queues, topic,
alarm, log groups, roles) is plain CDK, and the roles are written by hand: each names the actions
its function needs on this stack's own resources, and `*` only where X-Ray requires it.
"""
from __future__ import annotations

import re
from pathlib import Path

import aws_cdk as cdk
from aws_cdk import (
    aws_cloudwatch as cloudwatch,
    aws_cloudwatch_actions as cloudwatch_actions,
    aws_dynamodb as dynamodb,
    aws_iam as iam,
    aws_logs as logs,
    aws_sns as sns,
    aws_sns_subscriptions as subscriptions,
    aws_sqs as sqs,
)
from chalice.cdk import Chalice
from constructs import Construct

from chalicelib.adapters.sns_notifier import TOPIC_DISPLAY_NAME

from .org import OrgConfig
from .source import POLICY_PATH

VERIFY_WORKER = "VerifyWorker"  # SAM's logical id for the app's `verify_worker` SQS handler
API_TIMEOUT_SECONDS = 30        # API Gateway gives up at 29 s anyway
VERIFY_TIMEOUT_SECONDS = 120
VISIBILITY_TIMEOUTS_PER_RUN = 6  # AWS's advice for an SQS event source: six times the function timeout
MAX_RECEIVE_COUNT = 5
MEMORY_MB = 512  # Lambda's CPU share grows with memory; signatures and JSON are CPU-bound
LOG_RETENTION = logs.RetentionDays.ONE_MONTH


def _error_template(code: str, message: str) -> dict:
    """A refusal API Gateway answers itself, in the JSON error shape of DESIGN.md §3."""
    return {"application/json": '{"error": {"code": "%s", "message": %s}}' % (code, message)}


# What API Gateway answers before the app sees a request. A path or method no route takes is its
# "Missing Authentication Token" 403 by default: a 404 here, as the local node answers it.
GATEWAY_RESPONSES = {
    "MISSING_AUTHENTICATION_TOKEN": {"StatusCode": "404", "ResponseTemplates": _error_template(
        "not_found", '"no route for $context.httpMethod $context.path"')},
    "THROTTLED": {"ResponseTemplates": _error_template("rate_limited", "$context.error.messageString")},
    "REQUEST_TOO_LARGE": {"ResponseTemplates": _error_template("too_large", "$context.error.messageString")},
    "DEFAULT_4XX": {"ResponseTemplates": _error_template("bad_request", "$context.error.messageString")},
    "DEFAULT_5XX": {"ResponseTemplates": _error_template("internal", "$context.error.messageString")},
}

TABLE_ACTIONS = ["dynamodb:BatchGetItem", "dynamodb:BatchWriteItem", "dynamodb:ConditionCheckItem",
                 "dynamodb:DeleteItem", "dynamodb:DescribeTable", "dynamodb:GetItem", "dynamodb:PutItem",
                 "dynamodb:Query", "dynamodb:UpdateItem"]
CONSUME_ACTIONS = ["sqs:ChangeMessageVisibility", "sqs:DeleteMessage", "sqs:GetQueueAttributes",
                   "sqs:ReceiveMessage"]
XRAY_ACTIONS = ["xray:PutTelemetryRecords", "xray:PutTraceSegments"]  # these take no resource but `*`


class MissingHandler(ValueError):
    """The app lacks a function the stack is built around."""


def stack_name(org: str) -> str:
    return f"netimmune-{org}"


def kebab(logical_id: str) -> str:
    """`APIHandler` -> `api-handler`, `VerifyWorker` -> `verify-worker`."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "-", logical_id).lower()


class NodeStack(cdk.Stack):
    """The stack `make deploy ORG=<name>` creates: everything one organisation's node needs."""

    def __init__(self, scope: Construct, org: OrgConfig, app_dir: Path, **kwargs) -> None:
        super().__init__(scope, stack_name(org.name), **kwargs, description=f"netimmune node of {org.name}")
        self.org = org
        prefix = stack_name(org.name)
        cdk.Tags.of(self).add("netimmune:org", org.name)

        self.table = dynamodb.Table(
            self, "Table", table_name=prefix,
            partition_key=dynamodb.Attribute(name="pk", type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name="sk", type=dynamodb.AttributeType.STRING),
            time_to_live_attribute="expires_at",
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True),
            removal_policy=cdk.RemovalPolicy.RETAIN)  # reports and cases outlive the stack

        self.dead_letters = sqs.Queue(
            self, "VerifyDeadLetters", queue_name=f"{prefix}-verify-dlq",
            retention_period=cdk.Duration.days(14),
            encryption=sqs.QueueEncryption.SQS_MANAGED, enforce_ssl=True)
        self.queue_name = f"{prefix}-verify"
        self.queue = sqs.Queue(
            self, "VerifyQueue", queue_name=self.queue_name,
            visibility_timeout=cdk.Duration.seconds(VERIFY_TIMEOUT_SECONDS * VISIBILITY_TIMEOUTS_PER_RUN),
            dead_letter_queue=sqs.DeadLetterQueue(max_receive_count=MAX_RECEIVE_COUNT, queue=self.dead_letters),
            encryption=sqs.QueueEncryption.SQS_MANAGED, enforce_ssl=True)

        # SNS puts the display name and "> " before every SMS: the notifier leaves room for exactly this name
        self.topic = sns.Topic(self, "Alerts", topic_name=f"{prefix}-alerts",
                               display_name=TOPIC_DISPLAY_NAME, enforce_ssl=True)
        for email in org.alert_emails:
            self.topic.add_subscription(subscriptions.EmailSubscription(email))
        for phone in org.alert_phones:
            self.topic.add_subscription(subscriptions.SmsSubscription(phone))
        self._dead_letter_alarm()

        self._documents: dict[str, iam.PolicyDocument] = {}
        self.key_parameter_arn = self.format_arn(service="ssm", resource="parameter",
                                                 resource_name=org.key_parameter.lstrip("/"))
        self.api_role = self._role("ApiRole", "the API handler and any function without a role of its own")
        self.worker_role = self._role("VerifyWorkerRole", "the verify worker, which consumes the verify queue")
        self._allow(self.worker_role, CONSUME_ACTIONS, self.queue.queue_arn)

        self.chalice = Chalice(self, "Node", source_dir=str(app_dir), stage_config=self._stage_config())
        self.functions = {child.node.id: child for child in self.chalice.sam_template.node.children
                          if isinstance(child, cdk.CfnResource)
                          and child.cfn_resource_type == "AWS::Serverless::Function"}
        if VERIFY_WORKER not in self.functions:
            raise MissingHandler("app.py has no `verify_worker` SQS handler (@app.on_sqs_message); "
                                 "the stack needs it to run verifications from the queue")
        for logical_id, function in self.functions.items():
            self._configure(logical_id, function)
        self._wire_worker(self.functions[VERIFY_WORKER])
        self._tune_api(org.api_rate_limit)
        self._outputs()

    def _stage_config(self) -> dict:
        """Chalice's stage settings: no role of its own making, tracing on, the app's environment."""
        org = self.org
        return {
            "api_gateway_stage": "v1",
            "api_gateway_endpoint_type": "REGIONAL",
            "autogen_policy": False,
            "manage_iam_role": False,
            "iam_role_arn": self.api_role.role_arn,
            "xray": True,
            "environment_variables": {
                "NETIMMUNE_STORE": "dynamodb",
                "NETIMMUNE_TABLE": self.table.table_name,
                "NETIMMUNE_VERIFY_QUEUE_URL": self.queue.queue_url,
                # A plain name, not a token: Chalice imports app.py with it to find the queue to subscribe to.
                "NETIMMUNE_VERIFY_QUEUE": self.queue_name,
                "NETIMMUNE_ALERT_TOPIC_ARN": self.topic.topic_arn,
                "NETIMMUNE_TRUST_ANCHOR": org.root_key,
                "NETIMMUNE_KEY_PARAMETER": org.key_parameter,
                "NETIMMUNE_POLICY": POLICY_PATH,
                "NETIMMUNE_ENDPOINT": org.endpoint,
                "POWERTOOLS_SERVICE_NAME": "netimmune",
                "POWERTOOLS_METRICS_NAMESPACE": "netimmune",
            },
        }

    def _role(self, construct_id: str, description: str) -> iam.Role:
        """A function role with what every netimmune function does: the table, enqueue, alert, read its key."""
        statements = [
            iam.PolicyStatement(actions=TABLE_ACTIONS, resources=[self.table.table_arn]),
            iam.PolicyStatement(actions=["sqs:SendMessage"], resources=[self.queue.queue_arn]),
            iam.PolicyStatement(actions=["sns:Publish"], resources=[self.topic.topic_arn]),
            iam.PolicyStatement(actions=["ssm:GetParameter"], resources=[self.key_parameter_arn]),
            # A SecureString under a customer managed key needs this; only through SSM, only for this parameter.
            iam.PolicyStatement(
                actions=["kms:Decrypt"],
                resources=[self.format_arn(service="kms", resource="key", resource_name="*")],
                conditions={"StringEquals": {
                    "kms:ViaService": f"ssm.{self.region}.amazonaws.com",
                    "kms:EncryptionContext:PARAMETER_ARN": self.key_parameter_arn}}),
            iam.PolicyStatement(actions=XRAY_ACTIONS, resources=["*"]),
        ]
        # Inline, so a function never starts (nor its SQS mapping gets created) before its permissions exist.
        document = iam.PolicyDocument(statements=statements)
        role = iam.Role(self, construct_id, description=f"netimmune {self.org.name}: {description}",
                        assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
                        inline_policies={"node": document})
        self._documents[construct_id] = document
        return role

    def _allow(self, role: iam.Role, actions: list[str], resource: str) -> None:
        """Add to the role's inline policy (not a separate policy resource the function would not wait for)."""
        self._documents[role.node.id].add_statements(iam.PolicyStatement(actions=actions, resources=[resource]))

    def _configure(self, logical_id: str, function: cdk.CfnResource) -> None:
        """A readable name, its limits, and a log group with a retention that only this function writes to.

        (Chalice's stage_config cannot carry per-function settings: it reads those from its config file.)
        """
        name = f"{stack_name(self.org.name)}-{kebab(logical_id)}"
        function.add_property_override("FunctionName", name)
        function.add_property_override("MemorySize", MEMORY_MB)
        function.add_property_override(
            "Timeout", VERIFY_TIMEOUT_SECONDS if logical_id == VERIFY_WORKER else API_TIMEOUT_SECONDS)
        log_group = logs.LogGroup(self, f"{logical_id}Logs", log_group_name=f"/aws/lambda/{name}",
                                  retention=LOG_RETENTION, removal_policy=cdk.RemovalPolicy.DESTROY)
        function.node.add_dependency(log_group)
        role = self.worker_role if logical_id == VERIFY_WORKER else self.api_role
        self._allow(role, ["logs:CreateLogStream", "logs:PutLogEvents"], log_group.log_group_arn)

    def _wire_worker(self, worker: cdk.CfnResource) -> None:
        """The worker's own role, partial batch failures, and a cap on verifications running at once."""
        worker.add_property_override("Role", self.worker_role.role_arn)
        event = f"Events.{VERIFY_WORKER}SqsEventSource.Properties"
        # Chalice spells the queue's ARN out of its name; a reference makes the mapping wait for the queue.
        worker.add_property_override(f"{event}.Queue", self.queue.queue_arn)
        worker.add_property_override(f"{event}.FunctionResponseTypes", ["ReportBatchItemFailures"])
        worker.add_property_override(f"{event}.ScalingConfig",
                                     {"MaximumConcurrency": self.org.verify_concurrency})
        if not self.org.endpoint:
            # The worker puts this node's URL in canary requests and alerts. Without a domain it is the API's
            # own URL, which only the worker may reference: the API handler's function is part of that API.
            worker.add_property_override("Environment.Variables.NETIMMUNE_ENDPOINT", cdk.Fn.sub(
                "https://${RestAPI}.execute-api.${AWS::Region}.${AWS::URLSuffix}/v1"))

    def _tune_api(self, rate: int) -> None:
        """Traced, throttled (a flood costs money, not just time), its own refusals in the app's error shape, and
        under the org's own name if it has one."""
        api = self.chalice.get_resource("RestAPI")
        api.add_property_override("TracingEnabled", True)
        api.add_property_override("GatewayResponses", GATEWAY_RESPONSES)
        api.add_property_override("MethodSettings", [{
            "ResourcePath": "/*", "HttpMethod": "*",
            "ThrottlingRateLimit": rate, "ThrottlingBurstLimit": 2 * rate}])
        if self.org.certificate_arn:
            # SAM's own Domain, not Chalice's: SAM maps the domain to the stage it creates, after creating it.
            api.add_property_override("Domain", {"DomainName": self.org.domain,
                                                 "CertificateArn": self.org.certificate_arn,
                                                 "EndpointConfiguration": "REGIONAL",
                                                 "SecurityPolicy": "TLS_1_2"})

    def _dead_letter_alarm(self) -> None:
        """Any message in the dead-letter queue is a verification that failed five times: tell the operator."""
        alarm = cloudwatch.Alarm(
            self, "VerifyDeadLettersAlarm", alarm_name=f"{stack_name(self.org.name)}-verify-dead-letters",
            alarm_description="Verification jobs failed 5 times and wait in the dead-letter queue; "
                              "see docs/aws.md for how to inspect and redrive them.",
            metric=self.dead_letters.metric_approximate_number_of_messages_visible(
                period=cdk.Duration.minutes(1), statistic="Maximum"),
            threshold=0, evaluation_periods=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING)
        alarm.add_alarm_action(cloudwatch_actions.SnsAction(self.topic))
        alarm.add_ok_action(cloudwatch_actions.SnsAction(self.topic))
        # enforce_ssl gives the topic a policy of its own, which replaces SNS's default one: without this
        # statement CloudWatch may not publish the alarm to it
        self.topic.add_to_resource_policy(iam.PolicyStatement(
            actions=["sns:Publish"], resources=[self.topic.topic_arn],
            principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
            conditions={"ArnEquals": {"aws:SourceArn": alarm.alarm_arn}}))

    def _outputs(self) -> None:
        for name, value in {
            "TableName": self.table.table_name,
            "VerifyQueueUrl": self.queue.queue_url,
            "VerifyDeadLetterQueueUrl": self.dead_letters.queue_url,
            "AlertTopicArn": self.topic.topic_arn,
            "KeyParameterName": self.org.key_parameter,
            "Prefixes": ", ".join(self.org.prefixes),
        }.items():
            cdk.CfnOutput(self, name, value=value)
