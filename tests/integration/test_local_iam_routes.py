"""``python -m local`` serves a template's AWS_IAM routes as API Gateway does: requests signed by
clients/signed_api.py with the local credentials reach the function with ``requestContext.authorizer.iam``; anything
else gets API Gateway's 403 and never reaches it."""

import textwrap
from pathlib import Path

import pytest
import requests
from botocore.credentials import Credentials

from clients import signed_api
from local.services import ACCESS_KEY_ID, aws_session
from tests.integration.conftest import Runtime

TEMPLATE = """
Transform: AWS::Serverless-2016-10-31
Resources:
  Api:
    Type: AWS::Serverless::HttpApi
    Properties:
      Auth: {EnableIamAuthorizer: true}
  ServerScoresFunction:
    Type: AWS::Serverless::Function
    Properties:
      Runtime: python3.13
      CodeUri: code/
      Handler: echo.lambda_handler
      Events:
        Post:
          Type: HttpApi
          Properties: {ApiId: !Ref Api, Method: POST, Path: /v1/server/scores, Auth: {Authorizer: AWS_IAM}}
"""

ECHO = """
import json

def lambda_handler(event, context):
    return {"statusCode": 202, "body": json.dumps({"iam": event["requestContext"]["authorizer"]["iam"],
                                                   "received": json.loads(event["body"])})}
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    (root / "code").mkdir(parents=True)
    (root / "template.yaml").write_text(TEMPLATE)
    (root / "code" / "echo.py").write_text(textwrap.dedent(ECHO))
    return root


def test_a_signed_post_reaches_the_function_as_the_local_operator_and_an_unsigned_one_is_403(
    runtime: Runtime,
) -> None:
    session = aws_session(runtime.endpoints().session_token)
    url = f"{runtime.url}/v1/server/scores"

    accepted = signed_api.post(url, {"user_id": "u-1", "score": 420}, session.get_credentials(), region="us-east-1")
    unsigned = requests.post(url, json={"user_id": "u-1", "score": 420}, timeout=30)
    foreign = signed_api.post(url, {"score": 1}, Credentials("AKIAFOREIGNKEY000000", "x"), region="us-east-1")

    assert accepted.status_code == 202, accepted.text
    iam = accepted.json()["iam"]
    assert (iam["userArn"], iam["accountId"], iam["accessKey"]) == (
        "arn:aws:iam::123456789012:user/local-operator",
        "123456789012",
        ACCESS_KEY_ID,
    )
    assert accepted.json()["received"] == {"user_id": "u-1", "score": 420}
    assert (unsigned.status_code, unsigned.json()) == (403, {"message": "Forbidden"})
    assert (foreign.status_code, foreign.json()) == (
        403,
        {"message": "The security token included in the request is invalid."},
    )
    output = runtime.output()
    assert "POST /v1/server/scores  -> ServerScoresFunction  (AWS_IAM: SigV4 with the local credentials)" in output
    assert "IAM authorization refused: Missing Authentication Token" in output
