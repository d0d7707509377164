"""The resource models the local runtime works with: frozen specs of what template.yaml declares, read and resolved by
``local.template`` (functions, HTTP routes and authorizers, queues, SQS event sources, schedules, the Event API), and
the physical identities (``Ref`` / ``Fn::GetAtt``) of the resources once they exist.

Nothing here reads a template or runs anything: these are plain values, so the gateways, the pollers, the workers and
the tests can build them by hand.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from local.schedule_expressions import Schedule


@dataclass(frozen=True)
class ResourceIdentity:
    """What ``Ref`` and ``Fn::GetAtt`` return for one resource once it exists."""

    ref: str
    attributes: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class HttpRoute:
    """One ``HttpApi`` event: ``method path`` served by a function, with its authorizer: a Lambda authorizer's name,
    ``AWS_IAM`` (SigV4, API Gateway's own IAM authorization) or None (an open route)."""

    method: str
    path: str
    function_id: str
    authorizer: str | None
    timeout_ms: int = 30_000

    @property
    def route_key(self) -> str:
        """API Gateway's routeKey, e.g. ``POST /v1/logout``."""
        return f"{self.method} {self.path}"


@dataclass(frozen=True)
class LambdaAuthorizer:
    """An HttpApi Lambda REQUEST authorizer as API Gateway would configure it."""

    name: str
    function_id: str
    payload_format: str
    simple_responses: bool
    identity_headers: tuple[str, ...]
    identity_query_strings: tuple[str, ...]
    ttl_seconds: int


@dataclass(frozen=True)
class FunctionSpec:
    """An ``AWS::Serverless::Function`` with Globals merged in and every intrinsic it needs resolved."""

    logical_id: str
    name: str
    arn: str
    code_dir: Path
    handler: str
    layer_dirs: tuple[Path, ...]
    timeout_seconds: int
    memory_mb: int
    runtime: str
    environment: dict[str, str]


@dataclass(frozen=True)
class QueueSpec:
    """An ``AWS::SQS::Queue`` as it exists locally, with what its consumers and the console need."""

    logical_id: str
    url: str
    arn: str
    name: str
    visibility_timeout_seconds: int
    fifo: bool
    dead_letter_arn: str | None = None
    max_receive_count: int | None = None


@dataclass(frozen=True)
class SqsEventSource:
    """An ``SQS`` event of a function: the event source mapping Lambda would poll the queue with."""

    function_id: str
    event_name: str
    queue: QueueSpec
    batch_size: int
    batching_window_seconds: int
    report_batch_item_failures: bool
    maximum_concurrency: int | None = None
    enabled: bool = True


@dataclass(frozen=True)
class ScheduleRule:
    """A ``Schedule`` event of a function: the EventBridge rule SAM creates for it, which invokes the function."""

    function_id: str
    event_name: str
    schedule: Schedule
    name: str
    arn: str
    enabled: bool = True
    # The rule's constant ``Input`` (JSON text): what the function gets instead of the scheduled event.
    input: str | None = None


# --- AppSync Events ---

# The auth types an Event API's modes may name; the local runtime serves the first two (the others are TemplateErrors).
AWS_LAMBDA = "AWS_LAMBDA"
AWS_IAM = "AWS_IAM"
# How AppSync invokes a DIRECT Lambda handler: waiting for its answer, or asynchronously (its answer is ignored).
REQUEST_RESPONSE = "REQUEST_RESPONSE"
EVENT = "EVENT"


@dataclass(frozen=True)
class EventAuthorizer:
    """The Event API's ``AWS_LAMBDA`` auth provider: the function and how long AppSync caches its answers."""

    function_id: str
    ttl_seconds: int = 0
    # A regular expression the authorization value must match before the function is called (None: any value).
    identity_validation: str | None = None


@dataclass(frozen=True)
class ChannelHandler:
    """An ``OnPublish`` / ``OnSubscribe`` handler with Behavior DIRECT: a Lambda function behind a data source."""

    function_id: str
    data_source: str
    invoke_type: str = REQUEST_RESPONSE

    @property
    def waits(self) -> bool:
        """Whether AppSync waits for the function's answer (REQUEST_RESPONSE) or fires and forgets (EVENT)."""
        return self.invoke_type == REQUEST_RESPONSE


@dataclass(frozen=True)
class ChannelNamespaceSpec:
    """An ``AWS::AppSync::ChannelNamespace``: its auth modes (the API's defaults unless it overrides them), handlers."""

    name: str
    publish_auth: tuple[str, ...]
    subscribe_auth: tuple[str, ...]
    on_publish: ChannelHandler | None = None
    on_subscribe: ChannelHandler | None = None


@dataclass(frozen=True)
class EventApiSpec:
    """An ``AWS::AppSync::Api`` with an ``EventConfig`` (an Event API) and its channel namespaces."""

    logical_id: str
    api_id: str
    name: str
    # Bare hosts, as the Dns attributes give them: ``<id>.appsync-api.<region>.amazonaws.com`` and the realtime one.
    http_domain: str
    realtime_domain: str
    auth_types: tuple[str, ...]
    connection_auth: tuple[str, ...]
    namespaces: dict[str, ChannelNamespaceSpec]
    authorizer: EventAuthorizer | None = None

    @property
    def http_url(self) -> str:
        """Where publishers POST on AWS: ``https://<Dns.Http>/event``."""
        return f"https://{self.http_domain}/event"
