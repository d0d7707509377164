"""The integration tier: real handlers in-process against the stack in this process (moto's `mock_aws`, tables
and secret built from template.yaml, the signing key served by the emulated Secrets extension)."""

from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from leaderboard import aws, signing_keys
from local.in_process import InProcessStack, in_process_stack

# The machine's Redis, in a database of the tests' own; every test uses a board of its own in it.
REDIS_URL = "redis://127.0.0.1:6379/15"


class Stack:
    """The provisioned stack, with what tests need to look at or change it."""

    def __init__(self, stack: InProcessStack) -> None:
        self.dynamodb = stack.dynamodb
        self.sqs = boto3.client("sqs")
        self._stack = stack

    def physical_id(self, logical_id: str) -> str:
        return self._stack.physical_id(logical_id)

    def table(self, logical_id: str) -> str:
        return self._stack.physical_id(logical_id)

    def items(self, logical_id: str) -> list[dict[str, Any]]:
        return list(self.dynamodb.scan(TableName=self.table(logical_id))["Items"])

    def rotate_signing_key(self) -> signing_keys.SigningKey:
        """Put a new current version of the signing key, as a rotation would, and return it."""
        secret = "rotated-key-0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOP"
        version = self._stack.secretsmanager.put_secret_value(
            SecretId=self._stack.physical_id("SigningKeySecret"), SecretString=f'{{"signing_key": "{secret}"}}'
        )
        return signing_keys.SigningKey(kid=version["VersionId"], secret=secret.encode())


@pytest.fixture
def stack(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    """The stack; `@pytest.mark.parametrize("stack", [300], indirect=True)` sets the extension's cache seconds."""
    cache_seconds = getattr(request, "param", 0)
    with in_process_stack(extension_cache_seconds=cache_seconds, redis_url=REDIS_URL) as provisioned:
        # What a warm Lambda caches per process (SDK client, keys) starts cold in every test.
        aws.dynamodb.cache_clear()
        monkeypatch.setattr(signing_keys, "keys", signing_keys.SigningKeys())
        yield Stack(provisioned)
    aws.dynamodb.cache_clear()
