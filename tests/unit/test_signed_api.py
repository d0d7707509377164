"""clients/signed_api.py signs requests for execute-api as AWS checks them: its signatures pass the local runtime's
verification (the same check as API Gateway's), with the credentials and region it was given or finds."""

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from botocore.credentials import Credentials

from clients.signed_api import ExecuteApiAuth, SigningError, post, region_of
from local.gateway import Gateway
from local.plumbing import serve_in_thread, verify_sigv4
from local.services import ACCESS_KEY_ID, SECRET_ACCESS_KEY
from local.specs import AWS_IAM, HttpRoute
from tests.unit.fake_functions import FakeFunctions

DEPLOYED_URL = "https://a1b2c3d4e5.execute-api.us-east-1.amazonaws.com/v1/server/scores"


@pytest.fixture
def no_aws_configuration(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """An environment where boto3's default chain finds nothing but what a test sets (no files, no instance role)."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return monkeypatch


def signed(url: str, auth: ExecuteApiAuth, body: Any = None) -> requests.PreparedRequest:
    return auth(requests.Request("POST", url, json=body).prepare())


def test_the_region_comes_from_an_api_gateway_url_only() -> None:
    assert region_of("https://a1b2c3d4e5.execute-api.eu-west-1.amazonaws.com/v1/x") == "eu-west-1"
    assert region_of("https://a1b2c3d4e5.execute-api.cn-north-1.amazonaws.com.cn/v1/x") == "cn-north-1"
    assert region_of("https://api.example.com/v1/x") is None
    assert region_of("http://127.0.0.1:3000/v1/x") is None


def test_the_default_chain_signs_and_the_signature_is_the_one_aws_computes(
    no_aws_configuration: pytest.MonkeyPatch,
) -> None:
    no_aws_configuration.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLEOPERATOR1")
    no_aws_configuration.setenv("AWS_SECRET_ACCESS_KEY", "operator-secret")

    request = signed(DEPLOYED_URL, ExecuteApiAuth(), {"user_id": "u-1", "score": 420})

    authorization = request.headers["Authorization"]
    assert authorization.startswith("AWS4-HMAC-SHA256 Credential=AKIAEXAMPLEOPERATOR1/")
    assert "/us-east-1/execute-api/aws4_request, SignedHeaders=content-type;host;x-amz-date, " in authorization
    headers = {name.lower(): value for name, value in request.headers.items()} | {"host": urlsplit(DEPLOYED_URL).netloc}
    body = request.body if isinstance(request.body, bytes) else b""
    key = verify_sigv4(
        "POST",
        "/v1/server/scores",
        headers,
        [body],
        service="execute-api",
        credentials=("AKIAEXAMPLEOPERATOR1", "operator-secret"),
    )
    assert key == "AKIAEXAMPLEOPERATOR1"


def test_temporary_credentials_send_their_session_token() -> None:
    auth = ExecuteApiAuth(Credentials("ASIAEXAMPLE", "secret", "the-session-token"))

    request = signed(DEPLOYED_URL, auth, {})

    assert request.headers["X-Amz-Security-Token"] == "the-session-token"
    assert "x-amz-security-token" in request.headers["Authorization"]


def test_without_a_region_in_the_url_it_comes_from_the_environment(no_aws_configuration: pytest.MonkeyPatch) -> None:
    credentials = Credentials("AKIAEXAMPLE", "secret")

    with pytest.raises(SigningError, match=re.escape("no region for http://127.0.0.1:3000/v1/server/scores")):
        signed("http://127.0.0.1:3000/v1/server/scores", ExecuteApiAuth(credentials))
    no_aws_configuration.setenv("AWS_DEFAULT_REGION", "eu-central-1")
    request = signed("http://127.0.0.1:3000/v1/server/scores", ExecuteApiAuth(credentials))

    assert "/eu-central-1/execute-api/aws4_request" in request.headers["Authorization"]


def test_without_credentials_nothing_is_sent(no_aws_configuration: pytest.MonkeyPatch) -> None:
    with pytest.raises(SigningError, match="no AWS credentials"):
        post(DEPLOYED_URL, {"score": 1})


def test_post_sends_signed_json_that_the_local_gateway_lets_through() -> None:
    functions = FakeFunctions(ServerScores=lambda event: {"statusCode": 202, "body": event["body"]})
    gateway = Gateway(
        [HttpRoute("POST", "/v1/server/scores", "ServerScores", AWS_IAM)], {}, functions, say=lambda _: None
    )
    local = Credentials(ACCESS_KEY_ID, SECRET_ACCESS_KEY, "any-session-token")

    with serve_in_thread(gateway.app) as port:
        url = f"http://127.0.0.1:{port}/v1/server/scores"
        accepted = post(url, {"user_id": "u-1", "score": 420}, local, region="us-east-1")
        unsigned = requests.post(url, json={"user_id": "u-1", "score": 420}, timeout=10)

    assert (accepted.status_code, accepted.json()) == (202, {"user_id": "u-1", "score": 420})
    assert json.loads(functions.events_of("ServerScores")[0]["body"]) == {"user_id": "u-1", "score": 420}
    assert functions.events_of("ServerScores")[0]["headers"]["content-type"] == "application/json"
    assert (unsigned.status_code, unsigned.json()) == (403, {"message": "Forbidden"})
