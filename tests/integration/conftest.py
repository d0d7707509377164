"""The integration tier: handlers run in-process against moto's `mock_aws`, with the tables and the secret
created from template.yaml's own definitions (the local runtime's provisioner), the signing key read through
the emulated Parameters and Secrets extension, and each function's environment taken from the template."""

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from leaderboard import aws, signing_keys
from local import secrets_extension
from local.services import provision
from local.template import ResourceIdentity, Template

TEMPLATE = Path(__file__).parent.parent.parent / "template.yaml"
SESSION_TOKEN = "integration-session-token"


@dataclass
class Stack:
    """The provisioned resources, and what tests need to look at or change them."""

    identities: dict[str, ResourceIdentity]
    dynamodb: Any
    secretsmanager: Any

    def table(self, logical_id: str) -> str:
        return self.identities[logical_id].ref

    def items(self, logical_id: str) -> list[dict[str, Any]]:
        return list(self.dynamodb.scan(TableName=self.table(logical_id))["Items"])

    def rotate_signing_key(self) -> None:
        """Put a new current version of the signing key, as a rotation would; forget cached keys."""
        secret_id = self.identities["SigningKeySecret"].ref
        self.secretsmanager.put_secret_value(SecretId=secret_id, SecretString='{"signing_key": "rotated-key-0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"}')
        signing_keys.keys = signing_keys.SigningKeys()


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": SESSION_TOKEN,
        "AWS_DEFAULT_REGION": "us-east-1",
        "POWERTOOLS_SERVICE_NAME": "leaderboard",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        template = Template(TEMPLATE)
        identities = provision(template, boto3.session.Session(), None)  # type: ignore[arg-type]
        for function_id in template.function_ids():
            for name, value in template.function(function_id, identities).environment.items():
                monkeypatch.setenv(name, value)
        # Clients and keys are cached per process, as in a warm Lambda: each test starts cold.
        aws.dynamodb.cache_clear()
        monkeypatch.setattr(signing_keys, "keys", signing_keys.SigningKeys())
        with secrets_extension.serve(session_token=SESSION_TOKEN) as extension:
            monkeypatch.setenv("PARAMETERS_SECRETS_EXTENSION_HTTP_PORT", str(extension.port))
            yield Stack(identities, boto3.client("dynamodb"), boto3.client("secretsmanager"))
    aws.dynamodb.cache_clear()
