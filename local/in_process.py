"""The stack inside the calling process, for integration tests and benchmarks that call handlers directly.

moto's `mock_aws` stands in for AWS; the tables, queues and secrets are created from template.yaml's own definitions
(the same provisioner as `make run`), every function's environment from the template is set, and the signing key
is served by the emulated Parameters and Secrets extension on a free port. The template's cache endpoints (and
REDIS_URL) point at `redis_url` when given, else at a host name that never resolves. moto gets the same fixes as
the runtime's server (local.moto_server): concurrent requests are atomic as on AWS.

Nothing polls the queues here: a test receives the messages itself and calls the consumer with
`local.event_sources.sqs_event(messages, queue_arn)`, the event Lambda would build.
"""

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from unittest import mock

import boto3
from moto import mock_aws

from local import moto_server, secrets_extension
from local.services import cache_identities, provision
from local.template import ResourceIdentity, Template

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_secretsmanager import SecretsManagerClient
    from mypy_boto3_sqs import SQSClient

TEMPLATE = Path(__file__).parent.parent / "template.yaml"
SESSION_TOKEN = "in-process-session-token"  # noqa: S105 - a fake credential for moto
_FAKE_AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": SESSION_TOKEN,
    "AWS_DEFAULT_REGION": "us-east-1",
}


@dataclass
class InProcessStack:
    """The provisioned resources and clients to look at them."""

    identities: dict[str, ResourceIdentity]
    dynamodb: "DynamoDBClient"
    secretsmanager: "SecretsManagerClient"
    sqs: "SQSClient"

    def physical_id(self, logical_id: str) -> str:
        """The table name, secret ARN, queue URL... that `Ref` gives for a resource."""
        return self.identities[logical_id].ref

    def arn(self, logical_id: str) -> str:
        """What `Fn::GetAtt <resource>.Arn` gives, e.g. a queue's ARN for `eventSourceARN`."""
        return self.identities[logical_id].attributes["Arn"]


@contextmanager
def in_process_stack(
    template_path: Path = TEMPLATE, extension_cache_seconds: float = 0, redis_url: str | None = None
) -> Iterator[InProcessStack]:
    """Provision the template in `mock_aws` and set the environment the functions would see; undo both after.

    `extension_cache_seconds` is the emulated extension's cache (the real one keeps a secret 300 s by default).
    `redis_url` is the Redis the functions get (REDIS_URL, as the local runtime gives its own Redis to every function).
    Callers reset what the functions cache per process (SDK clients, keys) so each use starts cold.
    """
    environment = {key: value for key, value in os.environ.items() if key != "AWS_ENDPOINT_URL"} | _FAKE_AWS
    # Handlers called from several threads at once get DynamoDB's atomicity, as from moto's server in `make run`.
    moto_server.install()
    with mock.patch.dict(os.environ, environment, clear=True), mock_aws():
        template = Template(template_path)
        identities = provision(template, boto3.session.Session(), None)
        if redis_url:
            identities |= cache_identities(template, redis_url)
        for function_id in template.function_ids():
            os.environ.update(template.function(function_id, identities).environment)
        if redis_url:
            os.environ["REDIS_URL"] = redis_url
        with secrets_extension.serve(
            session_token=SESSION_TOKEN, cache_ttl_seconds=extension_cache_seconds
        ) as extension:
            os.environ["PARAMETERS_SECRETS_EXTENSION_HTTP_PORT"] = str(extension.port)
            yield InProcessStack(
                identities, boto3.client("dynamodb"), boto3.client("secretsmanager"), boto3.client("sqs")
            )
