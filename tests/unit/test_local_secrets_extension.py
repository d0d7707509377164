"""The emulated Parameters and Secrets extension answers like the real one, backed by moto's in-process mock."""

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from local import secrets_extension

TOKEN = "session-token-of-the-function"


@pytest.fixture
def secret_arn(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        created = boto3.client("secretsmanager").create_secret(Name="signing-key", SecretString='{"k": "v1"}')
        yield created["ARN"]


@pytest.fixture
def extension(secret_arn: str) -> Iterator[secrets_extension.SecretsExtension]:
    with secrets_extension.serve(session_token=TOKEN) as running:
        yield running


def get(extension: secrets_extension.SecretsExtension, query: str, token: str | None = TOKEN) -> tuple[int, Any]:
    headers = {secrets_extension.TOKEN_HEADER: token} if token is not None else {}
    url = f"http://localhost:{extension.port}/secretsmanager/get?{query}"
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_the_current_version_comes_back_as_get_secret_value_json(
    extension: secrets_extension.SecretsExtension, secret_arn: str
) -> None:
    status, body = get(extension, f"secretId={secret_arn}&versionStage=AWSCURRENT")

    assert status == 200
    assert (body["ARN"], body["Name"], body["SecretString"]) == (secret_arn, "signing-key", '{"k": "v1"}')
    assert body["VersionStages"] == ["AWSCURRENT"]
    assert body["VersionId"]
    assert body["CreatedDate"].endswith("Z")


def test_previous_and_specific_versions_are_served_after_a_rotation(
    extension: secrets_extension.SecretsExtension, secret_arn: str
) -> None:
    _, first = get(extension, f"secretId={secret_arn}")
    boto3.client("secretsmanager").put_secret_value(SecretId=secret_arn, SecretString='{"k": "v2"}')

    _, current = get(extension, f"secretId={secret_arn}")
    _, previous = get(extension, f"secretId={secret_arn}&versionStage=AWSPREVIOUS")
    _, by_id = get(extension, f"secretId={secret_arn}&versionId={first['VersionId']}")

    assert current["SecretString"] == '{"k": "v2"}'
    assert previous["SecretString"] == by_id["SecretString"] == '{"k": "v1"}'


@pytest.mark.parametrize("token", [None, "", "someone-elses-token"])
def test_a_missing_or_wrong_token_is_401(
    extension: secrets_extension.SecretsExtension, secret_arn: str, token: str | None
) -> None:
    status, _ = get(extension, f"secretId={secret_arn}", token=token)

    assert status == 401


def test_an_unknown_secret_or_version_is_400_with_the_service_error(
    extension: secrets_extension.SecretsExtension, secret_arn: str
) -> None:
    unknown_secret = get(extension, "secretId=no-such-secret")
    unknown_version = get(extension, f"secretId={secret_arn}&versionId={'0' * 32}")

    assert unknown_secret == (400, {"__type": "ResourceNotFoundException", "message": unknown_secret[1]["message"]})
    assert unknown_version[0] == 400
    assert unknown_version[1]["__type"] == "ResourceNotFoundException"


def test_with_a_cache_ttl_a_rotation_is_seen_only_once_the_entry_expires(secret_arn: str) -> None:
    with secrets_extension.serve(session_token=TOKEN, cache_ttl_seconds=300) as cached:
        before = get(cached, f"secretId={secret_arn}")[1]["SecretString"]
        boto3.client("secretsmanager").put_secret_value(SecretId=secret_arn, SecretString='{"k": "v2"}')
        after = get(cached, f"secretId={secret_arn}")[1]["SecretString"]

    assert before == after == '{"k": "v1"}'
