"""The example org's stack, synthesized once by `make synth ORG=example` with no AWS credentials.

Chalice's construct emits SAM, which CloudFormation expands at deploy time; the assertions that
depend on that expansion (the SQS event source mapping, the API stage) run on the template as
translated offline by aws-sam-translator, and cfn-lint checks both forms.
"""
from __future__ import annotations

import json
import os
import subprocess
import zipfile
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest
from aws_cdk.assertions import Match, Template
from cfnlint.api import lint
from samtranslator.parser.parser import Parser
from samtranslator.translator.translator import Translator

from infra.org import load_org, org_file
from infra.source import POLICY_PATH
from chalicelib.checks.runner import CHECK_BUDGET
from infra.stack import VERIFY_TIMEOUT_SECONDS, XRAY_ACTIONS

REPO = Path(__file__).resolve().parents[2]
ORG = load_org(org_file("example"))
REGION = "us-east-1"
APP_ENVIRONMENT = {"NETIMMUNE_STORE", "NETIMMUNE_TABLE", "NETIMMUNE_VERIFY_QUEUE_URL", "NETIMMUNE_VERIFY_QUEUE",
                   "NETIMMUNE_ALERT_TOPIC_ARN", "NETIMMUNE_TRUST_ANCHOR",
                   "NETIMMUNE_KEY_PARAMETER", "NETIMMUNE_POLICY", "NETIMMUNE_ENDPOINT",
                   "POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE"}


@dataclass(frozen=True)
class Synthesized:
    out: Path
    sam: dict          # as `make synth` wrote it
    translated: dict   # as CloudFormation will see it after the SAM transform

    def logical_id(self, resource_type: str, **properties) -> str:
        """The one resource of a type whose properties include these."""
        found = [key for key, resource in self.translated["Resources"].items()
                 if resource["Type"] == resource_type
                 and all(resource["Properties"].get(k) == v for k, v in properties.items())]
        assert len(found) == 1, f"{resource_type} {properties}: {found}"
        return found[0]

    def resource(self, logical_id: str) -> dict:
        return self.translated["Resources"][logical_id]


def sam_translate(template: dict) -> dict:
    def no_managed_policies() -> dict:
        raise AssertionError("the stack's functions use its own roles, never SAM policy templates")
    translator = Translator(None, Parser(), boto_session=boto3.session.Session(region_name=REGION))
    return translator.translate(json.loads(json.dumps(template)), parameter_values={},
                                get_managed_policy_map=no_managed_policies)


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Synthesized:
    """One synth for the module: it runs Chalice's packaging and the CDK's node runtime (several seconds)."""
    work = tmp_path_factory.mktemp("synth")
    env = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
    env["HOME"] = str(work)  # no ~/.aws either
    # -o: the virtualenv these tests run in is the one the target would install; never reinstall it here.
    done = subprocess.run(["make", "-o", ".venv/.installed", "synth", "ORG=example", f"OUT={work / 'cdk.out'}"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    sam = json.loads((work / "cdk.out" / "netimmune-example.template.json").read_text())
    return Synthesized(work / "cdk.out", sam, sam_translate(sam))


@pytest.fixture(scope="module")
def template(stack) -> Template:
    return Template.from_json(stack.translated)


def test_make_synth_writes_a_sam_template_without_aws_credentials(stack):
    assert stack.sam["Transform"] == "AWS::Serverless-2016-10-31"
    assert {"APIHandler", "VerifyWorker", "RestAPI"} <= stack.sam["Resources"].keys()


def test_table_is_one_on_demand_table_keyed_pk_sk_with_ttl_and_point_in_time_recovery(template):
    template.resource_count_is("AWS::DynamoDB::Table", 1)
    template.has_resource("AWS::DynamoDB::Table", {
        "DeletionPolicy": "Retain",
        "Properties": {
            "TableName": "netimmune-example",
            "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"},
                                     {"AttributeName": "sk", "AttributeType": "S"}],
            "BillingMode": "PAY_PER_REQUEST",
            "TimeToLiveSpecification": {"AttributeName": "expires_at", "Enabled": True},
            "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
            "GlobalSecondaryIndexes": Match.absent(),
        }})


def test_verify_queue_redrives_to_its_dead_letter_queue_after_five_receives(stack, template):
    dlq = stack.logical_id("AWS::SQS::Queue", QueueName="netimmune-example-verify-dlq")
    template.has_resource_properties("AWS::SQS::Queue", {
        "QueueName": "netimmune-example-verify",
        "RedrivePolicy": {"deadLetterTargetArn": {"Fn::GetAtt": [dlq, "Arn"]}, "maxReceiveCount": 5},
    })


def test_verify_queue_hides_a_message_for_six_worker_timeouts(stack):
    """Shorter, and a message still being worked on is handed to a second worker."""
    queue = stack.resource(stack.logical_id("AWS::SQS::Queue", QueueName="netimmune-example-verify"))
    worker = stack.resource("VerifyWorker")
    assert worker["Properties"]["Timeout"] == VERIFY_TIMEOUT_SECONDS > CHECK_BUDGET + 15  # time to record the result
    assert queue["Properties"]["VisibilityTimeout"] >= 6 * VERIFY_TIMEOUT_SECONDS


def test_worker_reads_the_verify_queue_one_job_at_a_time_and_reports_failures(stack, template):
    """A batch cut off by the function's timeout would come back whole: one job per invocation."""
    queue = stack.logical_id("AWS::SQS::Queue", QueueName="netimmune-example-verify")
    template.resource_count_is("AWS::Lambda::EventSourceMapping", 1)
    template.has_resource_properties("AWS::Lambda::EventSourceMapping", {
        "FunctionName": {"Ref": "VerifyWorker"},
        "EventSourceArn": {"Fn::GetAtt": [queue, "Arn"]},  # a reference, so the mapping waits for the queue
        "BatchSize": 1,
        "FunctionResponseTypes": ["ReportBatchItemFailures"],
        "ScalingConfig": {"MaximumConcurrency": ORG.verify_concurrency},
    })


def test_any_dead_letter_raises_an_alarm_on_the_alert_topic(stack, template):
    dlq = stack.logical_id("AWS::SQS::Queue", QueueName="netimmune-example-verify-dlq")
    topic = stack.logical_id("AWS::SNS::Topic", TopicName="netimmune-example-alerts")
    template.has_resource_properties("AWS::CloudWatch::Alarm", {
        "Namespace": "AWS/SQS", "MetricName": "ApproximateNumberOfMessagesVisible",
        "Dimensions": [{"Name": "QueueName", "Value": {"Fn::GetAtt": [dlq, "QueueName"]}}],
        "ComparisonOperator": "GreaterThanThreshold", "Threshold": 0,
        "AlarmActions": [{"Ref": topic}],
    })


def test_cloudwatch_may_publish_the_alarm_to_the_topic_whose_policy_refuses_plain_http(stack):
    """The topic's own policy (enforce_ssl) replaces SNS's default one, which let CloudWatch publish."""
    [policy] = [r for r in stack.translated["Resources"].values() if r["Type"] == "AWS::SNS::TopicPolicy"]
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    allowed = [s for s in statements if s["Effect"] == "Allow" and s["Action"] == "sns:Publish"]
    assert [s["Principal"] for s in allowed] == [{"Service": "cloudwatch.amazonaws.com"}]
    assert "aws:SourceArn" in allowed[0]["Condition"]["ArnEquals"]
    assert any(s["Effect"] == "Deny" and "aws:SecureTransport" in json.dumps(s) for s in statements)


def test_alert_topic_has_the_org_email_and_sms_subscribers(stack, template):
    topic = stack.logical_id("AWS::SNS::Topic", TopicName="netimmune-example-alerts")
    subscriptions = template.find_resources("AWS::SNS::Subscription")
    assert sorted((s["Properties"]["Protocol"], s["Properties"]["Endpoint"]) for s in subscriptions.values()) == \
        sorted([("email", e) for e in ORG.alert_emails] + [("sms", p) for p in ORG.alert_phones])
    assert all(s["Properties"]["TopicArn"] == {"Ref": topic} for s in subscriptions.values())


def test_every_function_gets_the_app_environment(stack, template):
    table = stack.logical_id("AWS::DynamoDB::Table", TableName="netimmune-example")
    functions = template.find_resources("AWS::Lambda::Function")
    assert functions.keys() == {"APIHandler", "VerifyWorker"}
    for function in functions.values():
        env = function["Properties"]["Environment"]["Variables"]
        assert env.keys() == APP_ENVIRONMENT
        assert env["NETIMMUNE_TABLE"] == {"Ref": table}
        assert env["NETIMMUNE_VERIFY_QUEUE"] == "netimmune-example-verify"
        assert env["NETIMMUNE_TRUST_ANCHOR"] == ORG.root_key
        assert env["NETIMMUNE_KEY_PARAMETER"] == "/netimmune/example/node-key"
        assert (env["NETIMMUNE_POLICY"], env["NETIMMUNE_ENDPOINT"]) == (POLICY_PATH, "https://reports.example.net")
        assert env["NETIMMUNE_STORE"] == "dynamodb"


def test_code_asset_holds_the_app_and_the_org_policy_where_the_environment_points(stack):
    key = stack.sam["Resources"]["VerifyWorker"]["Properties"]["CodeUri"]["Key"]
    with zipfile.ZipFile(stack.out / f"asset.{key}") as package:
        names = set(package.namelist())
        policy = package.read(POLICY_PATH.removeprefix("/var/task/"))
    assert {"app.py", "chalicelib/__init__.py", "chalice/app.py"} <= names
    assert policy == ORG.policy.read_bytes()


def test_each_function_is_named_logs_to_its_own_group_with_retention_and_waits_for_it(stack):
    for logical_id, name in [("APIHandler", "netimmune-example-api-handler"),
                             ("VerifyWorker", "netimmune-example-verify-worker")]:
        function = stack.resource(logical_id)
        group = stack.logical_id("AWS::Logs::LogGroup", LogGroupName=f"/aws/lambda/{name}")
        assert function["Properties"]["FunctionName"] == name
        assert group in function["DependsOn"]
        assert stack.resource(group)["Properties"]["RetentionInDays"] > 0


def role_statements(stack: Synthesized, logical_id: str) -> list[dict]:
    role = stack.resource(logical_id)
    assert "ManagedPolicyArns" not in role["Properties"]
    return [s for policy in role["Properties"]["Policies"] for s in policy["PolicyDocument"]["Statement"]]


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def test_iam_is_scoped_to_the_stacks_own_resources_and_star_only_for_xray(stack, template):
    """Each action names its resource in this stack (or the one key parameter); `*` only where AWS insists."""
    ids = {name: stack.logical_id(kind, **props) for name, (kind, props) in {
        "table": ("AWS::DynamoDB::Table", {"TableName": "netimmune-example"}),
        "queue": ("AWS::SQS::Queue", {"QueueName": "netimmune-example-verify"}),
        "topic": ("AWS::SNS::Topic", {"TopicName": "netimmune-example-alerts"}),
    }.items()}
    log_groups = {key for key, r in stack.translated["Resources"].items() if r["Type"] == "AWS::Logs::LogGroup"}
    assert not template.find_resources("AWS::IAM::Policy")
    allowed = {
        "dynamodb": lambda r: r == {"Fn::GetAtt": [ids["table"], "Arn"]},
        "sqs": lambda r: r == {"Fn::GetAtt": [ids["queue"], "Arn"]},
        "sns": lambda r: r == {"Ref": ids["topic"]},
        "ssm": lambda r: json.dumps(r).endswith(':parameter/netimmune/example/node-key"]]}'),
        "kms": lambda r: json.dumps(r).endswith(':key/*"]]}'),
        "logs": lambda r: r.get("Fn::GetAtt", [None])[0] in log_groups,
        "xray": lambda r: r == "*",
    }
    roles = [key for key, r in stack.translated["Resources"].items() if r["Type"] == "AWS::IAM::Role"]
    assert len(roles) == 2
    for role in roles:
        for statement in role_statements(stack, role):
            actions = as_list(statement["Action"])
            services = {action.split(":")[0] for action in actions}
            assert len(services) == 1, statement
            resources = as_list(statement["Resource"])
            assert all(allowed[services.pop()](r) for r in resources), statement
            if resources == ["*"]:
                assert sorted(actions) == XRAY_ACTIONS
            if actions == ["kms:Decrypt"]:  # any key, but only through SSM and only for the node's key
                assert statement["Condition"]["StringEquals"].keys() == {
                    "kms:ViaService", "kms:EncryptionContext:PARAMETER_ARN"}


def test_only_the_worker_role_may_consume_the_verify_queue(stack):
    def actions(logical_id: str) -> set[str]:
        return {a for s in role_statements(stack, logical_id) for a in as_list(s["Action"])}
    worker_role = stack.resource("VerifyWorker")["Properties"]["Role"]["Fn::GetAtt"][0]
    api_role = stack.resource("APIHandler")["Properties"]["Role"]["Fn::GetAtt"][0]
    assert worker_role != api_role
    assert {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility"} <= actions(worker_role)
    assert not {a for a in actions(api_role) if a.startswith("sqs:")} - {"sqs:SendMessage"}


def test_api_is_regional_traced_throttled_and_served_under_the_org_domain(stack, template):
    stage = stack.logical_id("AWS::ApiGateway::Stage", StageName="v1")
    template.has_resource_properties("AWS::ApiGateway::Stage", {
        "TracingEnabled": True,
        "MethodSettings": [Match.object_like({"ThrottlingRateLimit": ORG.api_rate_limit,
                                              "ThrottlingBurstLimit": 2 * ORG.api_rate_limit})],
    })
    template.has_resource_properties("AWS::ApiGateway::RestApi", {"EndpointConfiguration": {"Types": ["REGIONAL"]}})
    template.has_resource_properties("AWS::ApiGateway::DomainName", {
        "DomainName": ORG.domain, "RegionalCertificateArn": ORG.certificate_arn})
    template.has_resource_properties("AWS::ApiGateway::BasePathMapping", {"Stage": {"Ref": stage}})


def test_api_gateway_answers_unknown_routes_404_and_its_own_refusals_in_the_json_error_shape(stack):
    """API Gateway answers some requests without the app: a path no route takes (its 403 "Missing
    Authentication Token" by default), throttling, oversized bodies. They get the app's JSON error shape."""
    api = stack.resource(stack.logical_id("AWS::ApiGateway::RestApi"))
    responses = api["Properties"]["Body"]["x-amazon-apigateway-gateway-responses"]
    assert responses["MISSING_AUTHENTICATION_TOKEN"]["statusCode"] == "404"
    for kind in ("MISSING_AUTHENTICATION_TOKEN", "THROTTLED", "REQUEST_TOO_LARGE", "DEFAULT_4XX", "DEFAULT_5XX"):
        template = responses[kind]["responseTemplates"]["application/json"]
        # as API Gateway fills it in: $context.error.messageString is the message, already quoted
        filled = (template.replace("$context.error.messageString", '"Too Many Requests"')
                  .replace("$context.httpMethod", "GET").replace("$context.path", "/v2/x"))
        assert set(json.loads(filled)["error"]) == {"code", "message"}


@pytest.mark.parametrize("form", ["sam", "translated"])
def test_cfn_lint_finds_nothing_in_the_template(stack, form):
    matches = lint(json.dumps(getattr(stack, form)), regions=[REGION])
    assert not matches, "\n".join(str(m) for m in matches)


def test_without_a_domain_the_worker_uses_the_apis_own_url(tmp_path):
    """Canary requests and alert links need this node's URL; the API handler needs none (and could not
    reference its own API without a cycle). Synthesized in a process of its own, as `make synth` does:
    Chalice's packaging sets the Lambda environment in the process that imports the app."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
    env["HOME"] = str(tmp_path)
    done = subprocess.run(["make", "-o", ".venv/.installed", "synth", "ORG=minimal", f"OUT={tmp_path / 'cdk.out'}"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    sam = json.loads((tmp_path / "cdk.out" / "netimmune-minimal.template.json").read_text())
    functions = {name: resource["Properties"]["Environment"]["Variables"]
                 for name, resource in sam["Resources"].items() if resource["Type"] == "AWS::Serverless::Function"}
    assert functions["APIHandler"]["NETIMMUNE_ENDPOINT"] == ""
    assert functions["VerifyWorker"]["NETIMMUNE_ENDPOINT"] == {
        "Fn::Sub": "https://${RestAPI}.execute-api.${AWS::Region}.${AWS::URLSuffix}/v1"}
