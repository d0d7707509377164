"""The stack inside the calling process, for integration tests and benchmarks that call handlers directly.

moto's `mock_aws` stands in for AWS; the tables, queues and secrets are created from template.yaml's own definitions
(the same provisioner as `make run`), every function's environment from the template is set, and the signing key
is served by the emulated Parameters and Secrets extension on a free port. The template's cache endpoints (and
REDIS_URL) point at `redis_url` when given, else at a host name that never resolves. moto gets the same fixes as
the runtime's server (local.moto_server): concurrent requests are atomic as on AWS.

Nothing polls the queues here: a test receives the messages itself and calls the consumer with
`local.event_sources.sqs_event(messages, queue_arn)`, the event Lambda would build.

With `event_api=True` the template's Event API (AppSync Events) is served too, from a thread, on a free port
(`live_url`, `live_http_url`); its authorizer and handlers are the handlers in this process, and the functions'
environment points at it wherever the template names the deployed API (EVENT_API_URL).
"""

import asyncio
import importlib
import json
import os
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from unittest import mock

import boto3
from moto import mock_aws

from local import moto_server, secrets_extension
from local.event_api import EventApi, local_urls
from local.plumbing import serve_in_thread
from local.services import NO_REDIS_AUTH, cache_identities, local_url, provision
from local.specs import FunctionSpec, ResourceIdentity
from local.template import Template, TemplateError
from local.worker import LambdaContext
from local.workers import FunctionError, Invocation

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
    # Where the Event API listens (with `event_api=True`, else ""): clients connect to live_url, publishers POST to
    # live_http_url.
    live_url: str = ""
    live_http_url: str = ""

    def physical_id(self, logical_id: str) -> str:
        """The table name, secret ARN, queue URL... that `Ref` gives for a resource."""
        return self.identities[logical_id].ref

    def arn(self, logical_id: str) -> str:
        """What `Fn::GetAtt <resource>.Arn` gives, e.g. a queue's ARN for `eventSourceARN`."""
        return self.identities[logical_id].attributes["Arn"]


class InProcessFunctions:
    """Invokes the template's handlers in this process, each call in a thread (an `Invoker`, as the workers are).

    A handler is imported as the package its CodeUri names: `functions/live/` + `on_subscribe.lambda_handler` is
    `functions.live.on_subscribe`, the module tests import. Events and results go through JSON, as with Lambda.
    """

    def __init__(self, template: Template, identities: Mapping[str, ResourceIdentity]) -> None:
        self._template = template
        self._identities = identities
        self._specs: dict[str, FunctionSpec] = {}

    def _spec(self, function_id: str) -> FunctionSpec:
        if function_id not in self._specs:
            self._specs[function_id] = self._template.function(function_id, self._identities)
        return self._specs[function_id]

    def handler(self, function_id: str) -> Callable[[Any, Any], Any]:
        """The handler function of a function of the template."""
        spec = self._spec(function_id)
        package = ".".join(spec.code_dir.relative_to(self._template.root).parts)
        module_name, _, name = spec.handler.rpartition(".")
        module = importlib.import_module(f"{package}.{module_name}" if package else module_name)
        handler: Callable[[Any, Any], Any] = getattr(module, name)
        return handler

    async def invoke(self, function_id: str, event: Any) -> Invocation:
        """Call one function with `event` and return what it returned or raised."""
        spec = self._spec(function_id)
        request_id = str(uuid.uuid4())
        context = LambdaContext(request_id, int((time.time() + spec.timeout_seconds) * 1000), spec.arn)
        context.function_name = spec.name
        try:
            handler = self.handler(function_id)
            result = await asyncio.to_thread(handler, json.loads(json.dumps(event)), context)
            return Invocation(result=json.loads(json.dumps(result)), request_id=request_id)
        except Exception as exc:
            return Invocation(error=FunctionError(type(exc).__name__, str(exc)), request_id=request_id)


@contextmanager
def in_process_stack(
    template_path: Path = TEMPLATE,
    extension_cache_seconds: float = 0,
    redis_url: str | None = None,
    event_api: bool = False,
    redis_cluster: bool = False,
) -> Iterator[InProcessStack]:
    """Provision the template in `mock_aws` and set the environment the functions would see; undo both after.

    `extension_cache_seconds` is the emulated extension's cache (the real one keeps a secret 300 s by default).
    `redis_url` is the Redis the functions get (REDIS_URL, as the local runtime gives its own Redis to every function);
    `redis_cluster` that it takes a cluster-aware client (REDIS_CLUSTER: a Redis Cluster of several nodes).
    `event_api` serves the template's Event API too; leaving the stack closes its connections.
    Callers reset what the functions cache per process (SDK clients, keys) so each use starts cold.
    """
    environment = {key: value for key, value in os.environ.items() if key != "AWS_ENDPOINT_URL"} | _FAKE_AWS
    # Handlers called from several threads at once get DynamoDB's atomicity, as from moto's server in `make run`.
    moto_server.install()
    with mock.patch.dict(os.environ, environment, clear=True), mock_aws(), ExitStack() as running:
        template = Template(template_path)
        identities = provision(template, boto3.session.Session(), None)
        if redis_url:
            identities |= cache_identities(template, redis_url)
        extension = running.enter_context(
            secrets_extension.serve(session_token=SESSION_TOKEN, cache_ttl_seconds=extension_cache_seconds)
        )
        rewrites: dict[str, str] = {}
        live_url = live_http_url = ""
        if event_api:
            api = template.event_api(identities)
            if api is None:
                raise TemplateError(f"{template.path.name} has no Event API")
            functions = InProcessFunctions(template, identities)
            # The handlers sign publishes with the credentials mock_aws gives this process.
            credentials = (os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"])
            live = EventApi(api, functions, say=lambda _: None, credentials=credentials)
            port = running.enter_context(serve_in_thread(live.app))
            rewrites = local_urls(api, "127.0.0.1", port)
            live_url, live_http_url = f"ws://127.0.0.1:{port}/event/realtime", f"http://127.0.0.1:{port}/event"
        for function_id in template.function_ids():
            variables = template.function(function_id, identities).environment
            os.environ.update({name: local_url(value, rewrites) for name, value in variables.items()})
        if redis_url:
            os.environ.update(REDIS_URL=redis_url, REDIS_CLUSTER=str(redis_cluster).lower())
        os.environ.update(NO_REDIS_AUTH)
        os.environ["PARAMETERS_SECRETS_EXTENSION_HTTP_PORT"] = str(extension.port)
        yield InProcessStack(
            identities,
            boto3.client("dynamodb"),
            boto3.client("secretsmanager"),
            boto3.client("sqs"),
            live_url=live_url,
            live_http_url=live_http_url,
        )
