"""Every port's contract suite runs against every adapter of that port."""
from __future__ import annotations

import select
import subprocess
import time
import uuid
from functools import partial
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from moto import mock_aws

from chalicelib.adapters.dynamodb_reports import DynamoDBReportStore
from chalicelib.adapters.dynamodb_store import DynamoDBDelegationStore, DynamoDBTokenStore
from chalicelib.adapters.dynamodb_verification import DynamoDBVerificationStore
from chalicelib.adapters.sqlite_db import SQLiteDatabase
from chalicelib.adapters.sqlite_reports import SQLiteReportStore
from chalicelib.adapters.sqlite_store import SQLiteDelegationStore, SQLiteTokenStore
from chalicelib.adapters.sqlite_verification import SQLiteVerificationStore


def make_sqlite_stores(rebuild_threshold: int = 1000):
    """(delegations, tokens, reports, verifications) sharing one database, as the wiring builds them."""
    db = SQLiteDatabase(":memory:")
    return (SQLiteDelegationStore(db, rebuild_threshold), SQLiteTokenStore(db), SQLiteReportStore(db),
            SQLiteVerificationStore(db))


def make_dynamodb_stores(client):
    """(delegations, tokens, reports, verifications) over one fresh table, keyed as infra/stack.py makes it."""
    name = f"netimmune-{uuid.uuid4().hex}"
    client.create_table(
        TableName=name, BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                              {"AttributeName": "sk", "AttributeType": "S"}])
    deadline = time.monotonic() + 10
    while client.describe_table(TableName=name)["Table"]["TableStatus"] != "ACTIVE":
        assert time.monotonic() < deadline, f"table {name} never became active"
        time.sleep(0.01)
    return (DynamoDBDelegationStore(client, name), DynamoDBTokenStore(client, name), DynamoDBReportStore(client, name),
            DynamoDBVerificationStore(client, name))


STORE_FACTORIES = {
    "sqlite": make_sqlite_stores,
    # the same store when every batch takes the full-rebuild path of bulk loads
    "sqlite-rebuild": lambda: make_sqlite_stores(rebuild_threshold=0),
    "dynamodb-moto": make_dynamodb_stores,
    "dynalite": make_dynamodb_stores,
}
# A DynamoDB factory takes a client of the server that the fixture named here runs.
DYNAMODB_SERVERS = {"dynamodb-moto": "moto_dynamodb", "dynalite": "dynalite_dynamodb"}

AWS_TEST_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing",
                "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}
DYNALITE_DIR = Path(__file__).parent / "dynalite"


@pytest.fixture(scope="session")
def aws_test_env():
    """Fake credentials and a region, so botocore never looks for real ones."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in AWS_TEST_ENV.items():
            patch.setenv(name, value)
        yield


@pytest.fixture(scope="session")
def moto_client(aws_test_env):
    """Built once, as a client takes a fifth of a second to build; it reaches moto only inside mock_aws."""
    return boto3.client("dynamodb", region_name="us-east-1")


@pytest.fixture
def moto_dynamodb(moto_client):
    with mock_aws():
        yield moto_client


@pytest.fixture(scope="session")
def dynalite_dynamodb(aws_test_env):
    """A real DynamoDB-compatible HTTP server (dynalite, in memory) on a free loopback port.

    `make test` installs it (`npm ci` in tests/contract/dynalite); tests themselves reach only loopback.
    """
    if not (DYNALITE_DIR / "node_modules" / "dynalite").is_dir():
        pytest.fail("dynalite is not installed: run `make test`, or `npm ci` in tests/contract/dynalite")
    server = subprocess.Popen(["node", "serve.js"], cwd=DYNALITE_DIR, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True)
    try:
        ready, _, _ = select.select([server.stdout], [], [], 30)
        assert ready, "dynalite did not start within 30 s"
        port = int(server.stdout.readline())
        yield boto3.client("dynamodb", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                           config=Config(connect_timeout=5, read_timeout=30, retries={"max_attempts": 3}))
    finally:
        server.stdin.close()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)


@pytest.fixture(params=sorted(DYNAMODB_SERVERS))
def dynamodb_client(request):
    """A client of each DynamoDB server the contract suites run against."""
    return request.getfixturevalue(DYNAMODB_SERVERS[request.param])


@pytest.fixture(params=sorted(STORE_FACTORIES))
def store_factory(request):
    factory = STORE_FACTORIES[request.param]
    server = DYNAMODB_SERVERS.get(request.param)
    return partial(factory, request.getfixturevalue(server)) if server else factory


@pytest.fixture
def delegation_store(store_factory):
    return store_factory()[0]


@pytest.fixture
def token_store(store_factory):
    return store_factory()[1]


@pytest.fixture
def stores(store_factory):
    """A report store and a verification store over the same data."""
    made = store_factory()
    return made[2], made[3]


@pytest.fixture
def report_store(stores):
    return stores[0]


@pytest.fixture
def verification_store(stores):
    return stores[1]
