"""``python -m local`` and ``python -m local.invoke`` as real processes, on a small project of their own.

The project's functions read a secret through the emulated Secrets extension, write to a DynamoDB table and to Redis,
and sit behind a Lambda authorizer: the whole chain a product function relies on, end to end.
"""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import requests

from local.processes import descendants, free_port, pid_alive
from local.services import aws_session
from tests.integration.conftest import PROJECT_ROOT, Runtime, stop_and_check_nothing_is_left

TEMPLATE = """
Transform: AWS::Serverless-2016-10-31
Globals:
  Function:
    Runtime: python3.13
    Timeout: 5
    Layers: [!Ref SharedLayer]
    Environment:
      Variables:
        ITEMS_TABLE: !Ref ItemsTable
        TOKEN_SECRET_ARN: !Ref TokenSecret
Resources:
  SharedLayer:
    Type: AWS::Serverless::LayerVersion
    Properties: {ContentUri: layer}
  Api:
    Type: AWS::Serverless::HttpApi
    Properties:
      Auth:
        DefaultAuthorizer: TokenAuthorizer
        Authorizers:
          TokenAuthorizer:
            FunctionArn: !GetAtt AuthorizeFunction.Arn
            AuthorizerPayloadFormatVersion: "2.0"
            EnableSimpleResponses: true
            Identity: {Headers: [Authorization], ReauthorizeEvery: 0}
  ItemsTable:
    Type: AWS::DynamoDB::Table
    Properties:
      BillingMode: PAY_PER_REQUEST
      AttributeDefinitions:
        - {AttributeName: id, AttributeType: S}
        - {AttributeName: owner, AttributeType: S}
      KeySchema: [{AttributeName: id, KeyType: HASH}]
      GlobalSecondaryIndexes:
        - IndexName: by-owner
          KeySchema: [{AttributeName: owner, KeyType: HASH}]
          Projection: {ProjectionType: ALL}
      TimeToLiveSpecification: {AttributeName: expires_at, Enabled: true}
  TokenSecret:
    Type: AWS::SecretsManager::Secret
    Properties:
      GenerateSecretString:
        SecretStringTemplate: '{"user": "tester"}'
        GenerateStringKey: token
        PasswordLength: 40
        ExcludePunctuation: true
  AuthorizeFunction:
    Type: AWS::Serverless::Function
    Properties: {CodeUri: code/, Handler: authorize.lambda_handler}
  PutItemFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: code/
      Handler: put_item.lambda_handler
      Events:
        Put: {Type: HttpApi, Properties: {ApiId: !Ref Api, Method: PUT, Path: "/items/{id}"}}
  GetItemFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: code/
      Handler: get_item.lambda_handler
      Events:
        Get: {Type: HttpApi, Properties: {ApiId: !Ref Api, Method: GET, Path: "/items/{id}", Auth: {Authorizer: NONE}}}
"""

SECRETS = '''
import json, os, urllib.request

def token():
    """The secret's token, read through the Parameters and Secrets extension as on AWS."""
    port = os.environ["PARAMETERS_SECRETS_EXTENSION_HTTP_PORT"]
    secret_id = os.environ["TOKEN_SECRET_ARN"]
    request = urllib.request.Request(
        f"http://localhost:{port}/secretsmanager/get?secretId={secret_id}&versionStage=AWSCURRENT",
        headers={"X-Aws-Parameters-Secrets-Token": os.environ["AWS_SESSION_TOKEN"]},
    )
    with urllib.request.urlopen(request) as response:
        return json.loads(json.loads(response.read())["SecretString"])["token"]
'''

AUTHORIZE = """
import secrets_client

def lambda_handler(event, context):
    allowed = event["identitySource"] == [f"Bearer {secrets_client.token()}"]
    return {"isAuthorized": allowed, "context": {"owner": "tester"}}
"""

PUT_ITEM = """
import json, os
import boto3, redis

def lambda_handler(event, context):
    item_id = event["pathParameters"]["id"]
    owner = event["requestContext"]["authorizer"]["lambda"]["owner"]
    boto3.client("dynamodb").put_item(
        TableName=os.environ["ITEMS_TABLE"], Item={"id": {"S": item_id}, "owner": {"S": owner}}
    )
    redis.Redis.from_url(os.environ["REDIS_URL"]).set(f"leaderboard:item:{item_id}", json.loads(event["body"])["v"])
    return {"statusCode": 201, "body": json.dumps({"id": item_id, "owner": owner})}
"""

GET_ITEM = """
import os
import boto3, redis

def lambda_handler(event, context):
    item_id = event["pathParameters"]["id"]
    item = boto3.client("dynamodb").get_item(TableName=os.environ["ITEMS_TABLE"], Key={"id": {"S": item_id}})
    cached = redis.Redis.from_url(os.environ["REDIS_URL"]).get(f"leaderboard:item:{item_id}")
    return {"owner": item["Item"]["owner"]["S"], "cached": cached.decode()}
"""


def write_project(root: Path) -> Path:
    (root / "code").mkdir(parents=True)
    (root / "layer").mkdir()
    (root / "template.yaml").write_text(TEMPLATE)
    (root / "layer" / "secrets_client.py").write_text(textwrap.dedent(SECRETS))
    for name, source in {"authorize.py": AUTHORIZE, "put_item.py": PUT_ITEM, "get_item.py": GET_ITEM}.items():
        (root / "code" / name).write_text(textwrap.dedent(source))
    (root / "events").mkdir()
    (root / "events" / "get_item.json").write_text(json.dumps({"pathParameters": {"id": "item-1"}}))
    return root / "template.yaml"


def call(method: str, url: str, body: Any = None, token: str | None = None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = requests.request(method, url, json=body, headers=headers, timeout=30)
    return response.status_code, response.json()


def invoke(project: Path, state_dir: Path, *arguments: str, marker: str = "") -> subprocess.CompletedProcess[str]:
    environment = {key: value for key, value in os.environ.items() if key != "REDIS_URL"}
    environment |= {"LOCAL_STATE_DIR": str(state_dir), "LOCAL_TEST_MARKER": marker}
    return subprocess.run(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "local.invoke", *arguments, "--template", str(project / "template.yaml")],
        cwd=PROJECT_ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def processes_with_marker(marker: str) -> list[int]:
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if f"LOCAL_TEST_MARKER={marker}".encode() in environ.read_bytes():
                found.append(int(environ.parent.name))
        except (FileNotFoundError, PermissionError, ProcessLookupError):
            continue
    return found


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return write_project(tmp_path / "project").parent


def test_the_runtime_serves_the_template_and_stops_on_ctrl_c_leaving_nothing(runtime: Runtime, project: Path) -> None:
    endpoints = runtime.endpoints()
    session = aws_session(endpoints.session_token)
    secretsmanager = session.client("secretsmanager", endpoint_url=endpoints.aws_endpoint_url)
    dynamodb = session.client("dynamodb", endpoint_url=endpoints.aws_endpoint_url)
    secret = json.loads(
        secretsmanager.get_secret_value(SecretId=endpoints.identities["TokenSecret"].ref)["SecretString"]
    )
    table = dynamodb.describe_table(TableName="leaderboard-local-ItemsTable")["Table"]

    assert (secret["user"], len(secret["token"])) == ("tester", 40)
    assert [index["IndexName"] for index in table["GlobalSecondaryIndexes"]] == ["by-owner"]
    assert call("PUT", f"{runtime.url}/items/item-1", {"v": "1"}) == (401, {"message": "Unauthorized"})
    assert call("PUT", f"{runtime.url}/items/item-1", {"v": "1"}, token="wrong") == (403, {"message": "Forbidden"})
    assert call("PUT", f"{runtime.url}/items/item-1", {"v": "42"}, token=secret["token"]) == (
        201,
        {"id": "item-1", "owner": "tester"},
    )
    assert call("GET", f"{runtime.url}/items/item-1") == (200, {"owner": "tester", "cached": "42"})

    # local.invoke uses the running stack's moto and Redis: it sees what the API wrote.
    invoked = invoke(project, runtime.state_dir, "GetItemFunction", str(project / "events" / "get_item.json"))
    assert (invoked.returncode, json.loads(invoked.stdout)) == (0, {"owner": "tester", "cached": "42"}), invoked.stderr
    assert "using the running local stack" in invoked.stderr

    # A second runtime on the same state refuses to start over the running one.
    second = subprocess.run(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "local", "--template", str(project / "template.yaml")],
        cwd=PROJECT_ROOT,
        env=os.environ | {"LOCAL_STATE_DIR": str(runtime.state_dir), "LOCAL_API_PORT": str(free_port())},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (second.returncode, "already running" in second.stderr) == (1, True)

    output = runtime.output()
    assert f"HTTP API     {runtime.url}" in output
    assert "PUT /items/{id}  -> PutItemFunction  (authorizer AuthorizeFunction" in output
    assert "Ctrl-C to stop." in output
    assert len(descendants(runtime.process.pid)) >= 4  # moto, Redis and three function workers
    stop_and_check_nothing_is_left(runtime, signal.SIGINT)


def test_sigterm_stops_the_runtime_cleanly_too(runtime: Runtime) -> None:
    assert call("GET", f"{runtime.url}/items/none")[0] == 500  # a worker was started (and its handler failed)

    stop_and_check_nothing_is_left(runtime, signal.SIGTERM)


def test_even_kill_9_of_the_runtime_leaves_no_service_or_worker_behind(runtime: Runtime) -> None:
    call("GET", f"{runtime.url}/items/none")  # starts a worker
    children = descendants(runtime.process.pid)

    runtime.process.kill()
    runtime.process.wait(timeout=10)

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(pid_alive(pid) for pid in children):
        time.sleep(0.1)
    assert len(children) >= 3  # moto, Redis, a worker
    assert [pid for pid in children if pid_alive(pid)] == []


def test_invoke_without_a_running_stack_starts_and_stops_its_own_services(project: Path, tmp_path: Path) -> None:
    marker = uuid.uuid4().hex
    event = project / "events" / "authorize.json"
    event.write_text(json.dumps({"identitySource": ["Bearer not-the-token"]}))

    invoked = invoke(project, tmp_path / "state", "AuthorizeFunction", str(event), marker=marker)

    assert invoked.returncode == 0, invoked.stderr
    assert json.loads(invoked.stdout) == {"isAuthorized": False, "context": {"owner": "tester"}}
    assert "REPORT RequestId:" in invoked.stderr
    assert processes_with_marker(marker) == []


def test_invoke_explains_an_unknown_function_or_a_missing_event(project: Path, tmp_path: Path) -> None:
    unknown = invoke(project, tmp_path, "NoSuchFunction", str(project / "events" / "get_item.json"))
    missing = invoke(project, tmp_path, "GetItemFunction", str(project / "events" / "missing.json"))

    assert unknown.returncode == 2
    assert "valid LogicalIds: AuthorizeFunction, PutItemFunction, GetItemFunction" in unknown.stderr
    assert missing.returncode == 2
    assert f"no event file at {project / 'events' / 'missing.json'}" in missing.stderr
