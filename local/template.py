"""Read a SAM template the way CloudFormation would, as far as the local runtime needs it.

The loader understands the short intrinsic tags (``!Ref``, ``!Sub``...), the resolver evaluates the intrinsics
against parameter defaults, conditions, mappings, pseudo parameters and the physical identities of the resources,
and the ``Template`` class turns the result into the plain specs of ``local.specs``: functions with their merged
Globals, HTTP routes, authorizers, queues, the SQS event sources that feed functions, the EventBridge rules of their
``Schedule`` events, and the Event API (AWS AppSync Events: the ``AWS::AppSync::Api``, its channel namespaces, their
DIRECT Lambda handlers through data sources, the Lambda authorizer). Resources with no meaning on one machine (VPC,
subnets, security groups, ElastiCache, IAM roles, Lambda permissions...) get placeholder identities so the intrinsics
naming them resolve.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from local.schedule_expressions import ScheduleExpressionError, parse_schedule
from local.specs import (
    AWS_IAM,
    AWS_LAMBDA,
    EVENT,
    REQUEST_RESPONSE,
    ChannelHandler,
    ChannelNamespaceSpec,
    EventApiSpec,
    EventAuthorizer,
    FunctionSpec,
    HttpRoute,
    LambdaAuthorizer,
    QueueSpec,
    ScheduleRule,
    SqsEventSource,
)
from local.specs import ResourceIdentity as ResourceIdentity  # re-exported: Template takes and returns identities

STACK_NAME = "leaderboard-local"
REGION = "us-east-1"
ACCOUNT_ID = "123456789012"
PARTITION = "aws"
URL_SUFFIX = "amazonaws.com"
# The id API Gateway would give the HTTP API; it shows up in route ARNs and in requestContext.apiId.
LOCAL_API_ID = "localapi"

# The game the local runtime runs instead of template.yaml's GAME (LOCAL_GAME_FILE; empty: the template's own).
LOCAL_GAME_FILE = Path(__file__).with_name("game.json")

PSEUDO_PARAMETERS: dict[str, Any] = {
    "AWS::Region": REGION,
    "AWS::StackName": STACK_NAME,
    "AWS::StackId": f"arn:{PARTITION}:cloudformation:{REGION}:{ACCOUNT_ID}:stack/{STACK_NAME}/local",
    "AWS::AccountId": ACCOUNT_ID,
    "AWS::Partition": PARTITION,
    "AWS::URLSuffix": URL_SUFFIX,
    "AWS::NotificationARNs": [],
}
NO_VALUE = "AWS::NoValue"


class TemplateError(Exception):
    """The template uses something the local runtime cannot evaluate, or is inconsistent."""


# --- YAML with CloudFormation short tags ---


class _CloudFormationLoader(yaml.SafeLoader):
    """A safe YAML loader that turns ``!Tag value`` into the long form ``{"Fn::Tag": value}``."""


def _construct_node(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node, deep=True)
    raise TemplateError(f"unexpected YAML node {node!r}")


def _short_tag_constructor(long_name: str) -> Any:
    def construct(loader: yaml.SafeLoader, node: yaml.Node) -> dict[str, Any]:
        value = _construct_node(loader, node)
        # !GetAtt accepts "Resource.Attribute"; the long form is a two-element list.
        if long_name == "Fn::GetAtt" and isinstance(value, str):
            value = value.split(".", 1)
        return {long_name: value}

    return construct


for _tag in (
    "And", "Base64", "Cidr", "Equals", "FindInMap", "GetAtt", "GetAZs", "If", "ImportValue", "Join", "Not", "Or",
    "Select", "Split", "Sub", "Transform",
):  # fmt: skip
    _CloudFormationLoader.add_constructor(f"!{_tag}", _short_tag_constructor(f"Fn::{_tag}"))
_CloudFormationLoader.add_constructor("!Ref", _short_tag_constructor("Ref"))
_CloudFormationLoader.add_constructor("!Condition", _short_tag_constructor("Condition"))


def load_yaml(text: str) -> Any:
    """Parse CloudFormation YAML, short intrinsic tags included."""
    return yaml.load(text, Loader=_CloudFormationLoader)  # noqa: S506 - a SafeLoader subclass


# Lambda's limits for SQS event source mappings.
SQS_MAX_BATCH_SIZE = 10_000
SQS_FIFO_MAX_BATCH_SIZE = 10
SQS_MAX_BATCHING_WINDOW_SECONDS = 300
SQS_DEFAULT_VISIBILITY_TIMEOUT = 30

# Resources that mean nothing on one machine (networking, the managed cache): they get a made-up identity so
# intrinsics that name them resolve. Type: (prefix of the made-up id, attributes that are that id).
_PLACEHOLDER_IDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "AWS::EC2::VPC": ("vpc", ("VpcId",)),
    "AWS::EC2::Subnet": ("subnet", ("SubnetId",)),
    "AWS::EC2::RouteTable": ("rtb", ("RouteTableId",)),
    "AWS::EC2::Route": ("rtb-route", ()),
    "AWS::EC2::SubnetRouteTableAssociation": ("rtbassoc", ("Id",)),
    "AWS::EC2::SecurityGroup": ("sg", ("GroupId",)),
    "AWS::EC2::SecurityGroupIngress": ("sgr", ("Id",)),
    "AWS::EC2::SecurityGroupEgress": ("sgr", ("Id",)),
    "AWS::EC2::VPCEndpoint": ("vpce", ("Id",)),
    "AWS::EC2::InternetGateway": ("igw", ("InternetGatewayId",)),
    "AWS::EC2::VPCGatewayAttachment": ("vpcgwattach", ()),
    "AWS::EC2::NatGateway": ("nat", ("NatGatewayId",)),
    "AWS::EC2::EIP": ("eipalloc", ("AllocationId",)),
    "AWS::EC2::NetworkAcl": ("acl", ("Id",)),
    # The cache's IAM users: the local Redis has none (every function gets an empty REDIS_IAM_USER).
    "AWS::ElastiCache::User": ("user", ("Arn",)),
    "AWS::ElastiCache::UserGroup": ("usergroup", ("Arn",)),
}
# ElastiCache resources: the ARN's resource kind and the endpoint attributes the type has.
CACHE_TYPES: dict[str, tuple[str, tuple[str, ...]]] = {
    "AWS::ElastiCache::ServerlessCache": ("serverlesscache", ("Endpoint", "ReaderEndpoint")),
    "AWS::ElastiCache::ReplicationGroup": (
        "replicationgroup",
        ("PrimaryEndPoint", "ReaderEndPoint", "ConfigurationEndPoint"),
    ),
    "AWS::ElastiCache::CacheCluster": ("cluster", ("RedisEndpoint", "ConfigurationEndpoint")),
}
PLACEHOLDER_CACHE_PORT = "6379"


def cache_identity(logical_id: str, resource_type: str, host: str, port: str) -> ResourceIdentity:
    """The identity of an ElastiCache resource whose every endpoint is ``host:port``."""
    name = physical_name(logical_id)
    arn_kind, endpoints = CACHE_TYPES[resource_type]
    attributes = {"ARN": f"arn:{PARTITION}:elasticache:{REGION}:{ACCOUNT_ID}:{arn_kind}:{name}"}
    for endpoint in endpoints:
        attributes |= {f"{endpoint}.Address": host, f"{endpoint}.Port": port}
    return ResourceIdentity(name, attributes)


def placeholder_cache_host(logical_id: str) -> str:
    """Where a cache endpoint points until the runtime knows its Redis: a name that never resolves (RFC 6761)."""
    return f"{physical_name(logical_id).lower()}.cache.invalid"


def _placeholder_identity(logical_id: str, resource_type: str) -> ResourceIdentity:
    prefix, id_attributes = _PLACEHOLDER_IDS[resource_type]
    # Stable across runs, shaped like EC2's ids (17 hex digits).
    physical_id = f"{prefix}-{hashlib.sha256(logical_id.encode()).hexdigest()[:17]}"
    return ResourceIdentity(physical_id, dict.fromkeys(id_attributes, physical_id))


# AWS AppSync: an Event API's id (26 lowercase letters and digits), what its other resources are named by, and the
# names CloudFormation accepts for namespaces (the first segment of a channel).
APPSYNC_API_ID_LENGTH = 26
_APPSYNC_PARTS = {"AWS::AppSync::ChannelNamespace": "channelNamespace", "AWS::AppSync::DataSource": "datasources"}
_NAMESPACE_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,48}[A-Za-z0-9])?")


def stable_id(seed: str, length: int) -> str:
    """An id stable across runs, shaped like AWS's generated ones (lowercase letters and digits)."""
    return base64.b32encode(hashlib.sha256(seed.encode()).digest()).decode().lower()[:length]


def appsync_api_identity(logical_id: str) -> ResourceIdentity:
    """An ``AWS::AppSync::Api``: Ref is its ARN; ``ApiId``, ``ApiArn``, ``Dns.Http``, ``Dns.Realtime`` (bare hosts)."""
    api_id = stable_id(f"AWS::AppSync::Api/{logical_id}", APPSYNC_API_ID_LENGTH)
    arn = f"arn:{PARTITION}:appsync:{REGION}:{ACCOUNT_ID}:apis/{api_id}"
    return ResourceIdentity(
        arn,
        {
            "ApiId": api_id,
            "ApiArn": arn,
            "Dns.Http": f"{api_id}.appsync-api.{REGION}.{URL_SUFFIX}",
            "Dns.Realtime": f"{api_id}.appsync-realtime-api.{REGION}.{URL_SUFFIX}",
        },
    )


def role_identity(logical_id: str, role_name: str | None, path: str = "/") -> ResourceIdentity:
    """An ``AWS::IAM::Role`` (never created locally: functions run with the local credentials whatever their role)."""
    name = role_name or physical_name(logical_id)
    arn = f"arn:{PARTITION}:iam::{ACCOUNT_ID}:role{path}{name}"
    return ResourceIdentity(name, {"Arn": arn, "RoleId": "AROA" + stable_id(logical_id, 17).upper()})


# --- Resolver ---


def merge_globals(global_props: Mapping[str, Any], own_props: Mapping[str, Any]) -> dict[str, Any]:
    """Merge SAM Globals into a resource's properties: maps merge, lists add up (globals first), the resource wins."""
    merged = dict(global_props)
    for key, value in own_props.items():
        current = merged.get(key)
        if isinstance(current, dict) and isinstance(value, dict) and not _is_intrinsic(value):
            merged[key] = merge_globals(current, value)
        elif isinstance(current, list) and isinstance(value, list):
            merged[key] = current + value
        else:
            merged[key] = value
    return merged


def _is_intrinsic(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and next(iter(value)) in _INTRINSICS


def dependencies(value: Any) -> set[str]:
    """Names ``value`` refers to through Ref, GetAtt or Sub (resources, but also parameters and pseudo parameters)."""
    found: set[str] = set()
    if isinstance(value, list):
        for item in value:
            found |= dependencies(item)
    elif isinstance(value, dict):
        if set(value) == {"Ref"} and isinstance(value["Ref"], str):
            found.add(value["Ref"])
        elif set(value) == {"Fn::GetAtt"}:
            target = value["Fn::GetAtt"]
            found.add(target[0] if isinstance(target, list) else str(target).split(".", 1)[0])
        elif set(value) == {"Fn::Sub"}:
            sub = value["Fn::Sub"]
            text, variables = (sub, {}) if isinstance(sub, str) else (sub[0], sub[1])
            names = {name.split(".", 1)[0] for name in _SUB_VARIABLE.findall(text)}
            found |= names - set(variables)
            found |= dependencies(variables)
        else:
            for item in value.values():
                found |= dependencies(item)
    return found


_SUB_VARIABLE = re.compile(r"\$\{(?!!)([^}]+)\}")
_INTRINSICS = frozenset(
    {
        "Ref", "Condition", "Fn::And", "Fn::Base64", "Fn::Equals", "Fn::FindInMap", "Fn::GetAtt", "Fn::If",
        "Fn::Join", "Fn::Not", "Fn::Or", "Fn::Select", "Fn::Split", "Fn::Sub", "Fn::Cidr", "Fn::GetAZs",
        "Fn::ImportValue", "Fn::Transform",
    }
)  # fmt: skip


class Resolver:
    """Evaluates intrinsic functions against one template and the physical identities of its resources."""

    def __init__(
        self,
        template: Mapping[str, Any],
        identities: Mapping[str, ResourceIdentity],
        parameter_overrides: Mapping[str, str] | None = None,
    ) -> None:
        self._template = template
        self._identities = identities
        self._parameters = self._parameter_values(parameter_overrides or {})
        self._conditions: dict[str, bool] = {}

    def _parameter_values(self, overrides: Mapping[str, str]) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name, spec in (self._template.get("Parameters") or {}).items():
            if name in overrides:
                raw: Any = overrides[name]
            elif "Default" in spec:
                raw = spec["Default"]
            else:
                raise TemplateError(f"parameter {name} has no Default; pass it with --parameter-overrides")
            if str(spec.get("Type", "String")).startswith(("List<", "CommaDelimitedList")):
                values[name] = raw if isinstance(raw, list) else [item.strip() for item in str(raw).split(",")]
            else:
                # CloudFormation hands every scalar parameter (Number included) over as a string.
                values[name] = str(raw)
        unknown = set(overrides) - set(values)
        if unknown:
            raise TemplateError(f"unknown parameter(s) in overrides: {', '.join(sorted(unknown))}")
        return values

    def condition(self, name: str) -> bool:
        """The value of a named condition from the Conditions section."""
        if name not in self._conditions:
            definitions = self._template.get("Conditions") or {}
            if name not in definitions:
                raise TemplateError(f"unknown condition {name}")
            self._conditions[name] = self._boolean(self.resolve(definitions[name]), f"condition {name}")
        return self._conditions[name]

    def resolve(self, value: Any) -> Any:
        """Return ``value`` with every intrinsic function evaluated and ``AWS::NoValue`` entries dropped."""
        if isinstance(value, list):
            return [item for item in (self.resolve(v) for v in value) if item is not _DROP]
        if not isinstance(value, dict):
            return value
        if _is_intrinsic(value):
            (name, argument), *_ = value.items()
            return self._evaluate(name, argument)
        resolved = {key: self.resolve(item) for key, item in value.items()}
        return {key: item for key, item in resolved.items() if item is not _DROP}

    def _evaluate(self, name: str, argument: Any) -> Any:
        match name:
            case "Ref":
                return self._ref(argument)
            case "Condition":
                return self.condition(argument)
            case "Fn::GetAtt":
                resource, attribute = argument if isinstance(argument, list) else str(argument).split(".", 1)
                return self._get_att(self.resolve(resource), self.resolve(attribute))
            case "Fn::Sub":
                return self._sub(argument)
            case "Fn::If":
                condition_name, if_true, if_false = argument
                return self.resolve(if_true if self.condition(condition_name) else if_false)
            case "Fn::Equals":
                left, right = (self.resolve(item) for item in argument)
                return str(left) == str(right)
            case "Fn::Not":
                return not self._boolean(self.resolve(argument[0]), "Fn::Not")
            case "Fn::And":
                return all(self._boolean(self.resolve(item), "Fn::And") for item in argument)
            case "Fn::Or":
                return any(self._boolean(self.resolve(item), "Fn::Or") for item in argument)
            case "Fn::FindInMap":
                map_name, top_key, second_key = (self.resolve(item) for item in argument[:3])
                try:
                    return self._template["Mappings"][map_name][top_key][second_key]
                except KeyError as exc:
                    # AWS::LanguageExtensions' fourth argument: {DefaultValue: ...} when the keys are missing.
                    if len(argument) == 4 and "DefaultValue" in argument[3]:
                        return self.resolve(argument[3]["DefaultValue"])
                    raise TemplateError(f"Fn::FindInMap: no {map_name}/{top_key}/{second_key}") from exc
            case "Fn::Join":
                delimiter, items = argument
                return str(delimiter).join(str(item) for item in self.resolve(items))
            case "Fn::Select":
                index, items = argument
                return self.resolve(items)[int(self.resolve(index))]
            case "Fn::Split":
                delimiter, text = argument
                return str(self.resolve(text)).split(delimiter)
            case "Fn::Base64":
                return base64.b64encode(str(self.resolve(argument)).encode()).decode()
            case "Fn::GetAZs":
                return [f"{REGION}{zone}" for zone in "abc"]
        raise TemplateError(f"{name} is not supported by the local runtime")

    def _ref(self, name: str) -> Any:
        if name == NO_VALUE:
            return _DROP
        if name in PSEUDO_PARAMETERS:
            return PSEUDO_PARAMETERS[name]
        if name in self._parameters:
            return self._parameters[name]
        if name in self._identities:
            return self._identities[name].ref
        raise TemplateError(f"Ref to {name}, which is neither a parameter nor a resource that exists locally")

    def _get_att(self, resource: str, attribute: str) -> str:
        identity = self._identities.get(resource)
        if identity is None:
            raise TemplateError(f"Fn::GetAtt {resource}.{attribute}: no such resource exists locally")
        if attribute not in identity.attributes:
            raise TemplateError(f"Fn::GetAtt {resource}.{attribute}: attribute not available locally")
        return identity.attributes[attribute]

    def _sub(self, argument: Any) -> str:
        text, variables = (argument, {}) if isinstance(argument, str) else (argument[0], argument[1])
        values = {key: self.resolve(item) for key, item in variables.items()}

        def substitute(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in values:
                return str(values[name])
            if "." in name and name not in PSEUDO_PARAMETERS:
                resource, attribute = name.split(".", 1)
                return self._get_att(resource, attribute)
            return str(self._ref(name))

        # "${!Literal}" is CloudFormation's escape for a literal "${Literal}".
        return _SUB_VARIABLE.sub(substitute, text).replace("${!", "${")

    @staticmethod
    def _boolean(value: Any, where: str) -> bool:
        if isinstance(value, bool):
            return value
        if str(value).lower() in ("true", "false"):
            return str(value).lower() == "true"
        raise TemplateError(f"{where}: expected a boolean, got {value!r}")


class _Drop:
    """Marker for ``Ref: AWS::NoValue``: the enclosing property or list item disappears."""


_DROP: Any = _Drop()


# --- The template ---


class Template:
    """A SAM template read from disk, with the lookups the local runtime needs."""

    def __init__(
        self,
        path: Path,
        parameter_overrides: Mapping[str, str] | None = None,
    ) -> None:
        self.path = path.resolve()
        self.root = self.path.parent
        try:
            self.document: dict[str, Any] = load_yaml(self.path.read_text())
        except FileNotFoundError as exc:
            raise TemplateError(f"no template at {self.path}") from exc
        self.parameter_overrides = dict(parameter_overrides or {})
        conditions = Resolver(self.document, {}, self.parameter_overrides)
        # A resource whose Condition is false does not exist, as in CloudFormation.
        self.resources: dict[str, dict[str, Any]] = {
            logical_id: resource
            for logical_id, resource in (self.document.get("Resources") or {}).items()
            if "Condition" not in resource or conditions.condition(resource["Condition"])
        }

    # Resources by kind ------------------------------------------------------------------------------------------------

    def resources_of_type(self, *types: str) -> dict[str, dict[str, Any]]:
        """Resources of the given types, by logical id, in template order."""
        return {logical_id: res for logical_id, res in self.resources.items() if res.get("Type") in types}

    def placeholder_resources(self) -> list[str]:
        """Resources with no local meaning (networking, cache users), which get made-up identities; VpcConfig is
        ignored."""
        return list(self.resources_of_type(*_PLACEHOLDER_IDS))

    def cache_resources(self) -> list[str]:
        """ElastiCache resources: their endpoints are the local runtime's Redis."""
        return list(self.resources_of_type(*CACHE_TYPES))

    def function_ids(self) -> list[str]:
        """Logical ids of every ``AWS::Serverless::Function``."""
        return list(self.resources_of_type("AWS::Serverless::Function"))

    def function_properties(self, logical_id: str) -> dict[str, Any]:
        """A function's properties with ``Globals.Function`` merged in (still unresolved)."""
        resource = self.resources.get(logical_id)
        if resource is None or resource.get("Type") != "AWS::Serverless::Function":
            raise TemplateError(f"{logical_id} is not an AWS::Serverless::Function in {self.path.name}")
        global_props = (self.document.get("Globals") or {}).get("Function") or {}
        return merge_globals(global_props, resource.get("Properties") or {})

    # Identities -------------------------------------------------------------------------------------------------------

    def default_identities(self) -> dict[str, ResourceIdentity]:
        """The physical ids CloudFormation would give resources whose ids the runtime can choose itself.

        Resources created in a service (secrets, queues) get their identity from that service instead.
        """
        identities: dict[str, ResourceIdentity] = {}
        for logical_id, resource in self.resources.items():
            props = resource.get("Properties") or {}
            match resource.get("Type"):
                case "AWS::DynamoDB::Table":
                    name = props.get("TableName") or physical_name(logical_id)
                    arn = f"arn:{PARTITION}:dynamodb:{REGION}:{ACCOUNT_ID}:table/{name}"
                    identities[logical_id] = ResourceIdentity(name, {"Arn": arn, "StreamArn": f"{arn}/stream/local"})
                case "AWS::Serverless::Function":
                    name = props.get("FunctionName") or physical_name(logical_id)
                    arn = f"arn:{PARTITION}:lambda:{REGION}:{ACCOUNT_ID}:function:{name}"
                    identities[logical_id] = ResourceIdentity(name, {"Arn": arn})
                case "AWS::Serverless::HttpApi":
                    identities[logical_id] = ResourceIdentity(LOCAL_API_ID, {"ApiId": LOCAL_API_ID})
                case "AWS::Serverless::LayerVersion":
                    arn = f"arn:{PARTITION}:lambda:{REGION}:{ACCOUNT_ID}:layer:{physical_name(logical_id)}:1"
                    identities[logical_id] = ResourceIdentity(arn, {"Arn": arn})
                case "AWS::AppSync::Api":
                    identities[logical_id] = appsync_api_identity(logical_id)
                case "AWS::IAM::Role":
                    # A role's name and path are literals or parameters in any template worth serving.
                    literal = Resolver(self.document, {}, self.parameter_overrides)
                    name = literal.resolve(props.get("RoleName"))
                    identities[logical_id] = role_identity(
                        logical_id, name, str(literal.resolve(props.get("Path", "/")))
                    )
                case "AWS::Lambda::Permission":
                    # Who may invoke a function is not checked locally: any caller of the runtime may.
                    identities[logical_id] = ResourceIdentity(f"permission-{stable_id(logical_id, 17)}")
                case kind if kind in _PLACEHOLDER_IDS:
                    identities[logical_id] = _placeholder_identity(logical_id, kind)
                case kind if kind in CACHE_TYPES:
                    # The runtime points these at its own Redis once it knows it (services.cache_identities).
                    host = placeholder_cache_host(logical_id)
                    identities[logical_id] = cache_identity(logical_id, kind, host, PLACEHOLDER_CACHE_PORT)
        return identities | self._appsync_part_identities(identities)

    def _appsync_part_identities(self, identities: Mapping[str, ResourceIdentity]) -> dict[str, ResourceIdentity]:
        # Channel namespaces and data sources are named under their API's ARN, so they come once the APIs have ids.
        resolver = self.resolver(identities)
        arns_by_api_id = {
            identities[logical_id].attributes["ApiId"]: identities[logical_id].ref
            for logical_id in self.resources_of_type("AWS::AppSync::Api")
        }
        found: dict[str, ResourceIdentity] = {}
        for logical_id, resource in self.resources_of_type(*_APPSYNC_PARTS).items():
            props = resource.get("Properties") or {}
            api_arn = arns_by_api_id.get(str(resolver.resolve(props.get("ApiId"))))
            if api_arn is None:
                raise TemplateError(f"{logical_id}: ApiId is not the ApiId of an AWS::AppSync::Api of this template")
            name = str(resolver.resolve(props.get("Name")))
            arn = f"{api_arn}/{_APPSYNC_PARTS[resource['Type']]}/{name}"
            if resource["Type"] == "AWS::AppSync::ChannelNamespace":
                found[logical_id] = ResourceIdentity(arn, {"ChannelNamespaceArn": arn})
            else:
                found[logical_id] = ResourceIdentity(arn, {"DataSourceArn": arn, "Name": name})
        return found

    def resolver(self, identities: Mapping[str, ResourceIdentity]) -> Resolver:
        """A resolver for this template given the identities of the resources that exist."""
        return Resolver(self.document, identities, self.parameter_overrides)

    # Functions --------------------------------------------------------------------------------------------------------

    def function(self, logical_id: str, identities: Mapping[str, ResourceIdentity]) -> FunctionSpec:
        """Everything needed to run one function: code, handler, layers, limits and its resolved environment."""
        props = self.function_properties(logical_id)
        resolver = self.resolver(identities)
        if props.get("PackageType", "Zip") != "Zip":
            raise TemplateError(f"{logical_id}: only Zip functions run locally")
        runtime = str(resolver.resolve(props.get("Runtime", "")))
        if not runtime.startswith("python"):
            raise TemplateError(f"{logical_id}: runtime {runtime!r} is not a Python runtime")
        code_uri = resolver.resolve(props.get("CodeUri"))
        if not isinstance(code_uri, str):
            raise TemplateError(f"{logical_id}: CodeUri must be a local folder")
        variables = resolver.resolve((props.get("Environment") or {}).get("Variables") or {})
        if "GAME" in variables and (game_file := os.environ.get("LOCAL_GAME_FILE", str(LOCAL_GAME_FILE))):
            variables["GAME"] = Path(game_file).read_text()  # the local game: short durations, quick tests
        identity = identities[logical_id]
        return FunctionSpec(
            logical_id=logical_id,
            name=identity.ref,
            arn=identity.attributes["Arn"],
            code_dir=(self.root / code_uri).resolve(),
            handler=str(resolver.resolve(props["Handler"])),
            layer_dirs=tuple(self._layer_dirs(props.get("Layers") or [])),
            timeout_seconds=int(resolver.resolve(props.get("Timeout", 3))),
            memory_mb=int(resolver.resolve(props.get("MemorySize", 128))),
            runtime=runtime,
            environment={key: _environment_value(value) for key, value in variables.items()},
        )

    def _layer_dirs(self, layers: Iterable[Any]) -> Iterable[Path]:
        # Only layers built from this template have code here; external ARNs (the Secrets extension) are emulated.
        for layer in layers:
            if isinstance(layer, dict) and set(layer) == {"Ref"}:
                resource = self.resources.get(layer["Ref"]) or {}
                if resource.get("Type") == "AWS::Serverless::LayerVersion":
                    yield (self.root / resource["Properties"]["ContentUri"]).resolve()

    # SQS --------------------------------------------------------------------------------------------------------------

    def queues(self, identities: Mapping[str, ResourceIdentity]) -> list[QueueSpec]:
        """Every ``AWS::SQS::Queue`` with its URL (from ``identities``), visibility timeout and redrive policy."""
        resolver = self.resolver(identities)
        specs: list[QueueSpec] = []
        for logical_id, resource in self.resources_of_type("AWS::SQS::Queue").items():
            identity = identities.get(logical_id)
            if identity is None:
                raise TemplateError(f"queue {logical_id} does not exist locally (it is created at start)")
            # Only what polling needs: the rest (a KMS key, tags) may name resources the caller did not provision.
            props = {
                name: resolver.resolve(value)
                for name, value in (resource.get("Properties") or {}).items()
                if name in ("VisibilityTimeout", "FifoQueue", "RedrivePolicy")
            }
            redrive = redrive_policy(props.get("RedrivePolicy"), logical_id)
            specs.append(
                QueueSpec(
                    logical_id=logical_id,
                    url=identity.ref,
                    arn=identity.attributes["Arn"],
                    name=identity.attributes["QueueName"],
                    visibility_timeout_seconds=int(props.get("VisibilityTimeout", SQS_DEFAULT_VISIBILITY_TIMEOUT)),
                    fifo=_boolean_property(props.get("FifoQueue", False)),
                    dead_letter_arn=str(redrive["deadLetterTargetArn"]) if redrive else None,
                    max_receive_count=int(redrive["maxReceiveCount"]) if redrive else None,
                )
            )
        return specs

    def sqs_event_sources(self, identities: Mapping[str, ResourceIdentity]) -> list[SqsEventSource]:
        """Every ``SQS`` event of every function and every ``AWS::Lambda::EventSourceMapping`` on a queue of the
        template, checked against Lambda's limits for event source mappings."""
        queues_by_arn = {queue.arn: queue for queue in self.queues(identities)}
        resolver = self.resolver(identities)
        sources: list[SqsEventSource] = []
        for function_id in self.function_ids():
            events = self.function_properties(function_id).get("Events") or {}
            for event_name, event in events.items():
                if event.get("Type") != "SQS":
                    continue
                props = resolver.resolve(event.get("Properties") or {})
                where = f"{function_id}.{event_name}"
                queue_arn = props.get("Queue")
                sources.append(_sqs_event_source(function_id, event_name, queue_arn, props, queues_by_arn, where))
        functions_by_name = {identities[function_id].ref: function_id for function_id in self.function_ids()}
        for logical_id, resource in self.resources_of_type("AWS::Lambda::EventSourceMapping").items():
            props = resolver.resolve(resource.get("Properties") or {})
            if str(props.get("EventSourceArn")) not in queues_by_arn:
                continue  # a stream or a queue from elsewhere: nothing the runtime polls
            # FunctionName takes a name or an ARN (of the function, a version or an alias).
            function_name = str(props.get("FunctionName"))
            mapped = functions_by_name.get(function_name.split(":")[6] if ":" in function_name else function_name)
            if mapped is None:
                raise TemplateError(f"{logical_id}: FunctionName {function_name!r} is not a function of this template")
            queue_arn = props.get("EventSourceArn")
            sources.append(_sqs_event_source(mapped, logical_id, queue_arn, props, queues_by_arn, logical_id))
        return sources

    # Schedules --------------------------------------------------------------------------------------------------------

    def schedule_rules(self, identities: Mapping[str, ResourceIdentity]) -> list[ScheduleRule]:
        """Every ``Schedule`` event of every function: the EventBridge rule SAM would create, named as CloudFormation
        names it (``Name``, else the stack name and SAM's logical id of the rule, ``<Function><Event>``)."""
        resolver = self.resolver(identities)
        rules: list[ScheduleRule] = []
        for function_id in self.function_ids():
            events = self.function_properties(function_id).get("Events") or {}
            for event_name, event in events.items():
                if event.get("Type") != "Schedule":
                    continue
                where = f"{function_id}.{event_name}"
                props = resolver.resolve(event.get("Properties") or {})
                try:
                    schedule = parse_schedule(str(props.get("Schedule", "")))
                except ScheduleExpressionError as exc:
                    raise TemplateError(f"{where}: {exc}") from exc
                name = str(props.get("Name") or physical_name(f"{function_id}{event_name}"))
                rules.append(
                    ScheduleRule(
                        function_id=function_id,
                        event_name=event_name,
                        schedule=schedule,
                        name=name,
                        arn=f"arn:{PARTITION}:events:{REGION}:{ACCOUNT_ID}:rule/{name}",
                        enabled=_rule_enabled(props, where),
                        input=_rule_input(props.get("Input"), where),
                    )
                )
        return rules

    # HTTP API ---------------------------------------------------------------------------------------------------------

    def http_routes(self) -> list[HttpRoute]:
        """Every ``HttpApi`` event of every function, with the authorizer that guards it."""
        apis = self.resources_of_type("AWS::Serverless::HttpApi")
        routes: list[HttpRoute] = []
        for function_id in self.function_ids():
            events = self.function_properties(function_id).get("Events") or {}
            for event_name, event in events.items():
                if event.get("Type") != "HttpApi":
                    continue
                props = event.get("Properties") or {}
                api_id = _ref_target(props.get("ApiId")) if "ApiId" in props else None
                if api_id is not None and api_id not in apis:
                    raise TemplateError(f"{function_id}.{event_name}: ApiId {api_id} is not an HttpApi")
                if str(props.get("PayloadFormatVersion", "2.0")) != "2.0":
                    raise TemplateError(f"{function_id}.{event_name}: only payload format 2.0 is served locally")
                api_auth = self._http_api_auth(api_id)
                route_authorizer = (props.get("Auth") or {}).get("Authorizer", api_auth.get("DefaultAuthorizer"))
                if route_authorizer == AWS_IAM and not _boolean_property(api_auth.get("EnableIamAuthorizer", False)):
                    # SAM refuses the template too: AWS_IAM is only an authorizer once the API enables it.
                    raise TemplateError(
                        f"{function_id}.{event_name}: Authorizer AWS_IAM needs EnableIamAuthorizer: true in the "
                        f"Auth of {api_id or 'the implicit HttpApi'} (or of Globals.HttpApi)"
                    )
                routes.append(
                    HttpRoute(
                        method=str(props.get("Method", "ANY")).upper(),
                        path=str(props.get("Path", "$default")),
                        function_id=function_id,
                        authorizer=None if route_authorizer in (None, "NONE") else str(route_authorizer),
                        timeout_ms=int(props.get("TimeoutInMillis", 30_000)),
                    )
                )
        return routes

    def _http_api_auth(self, api_id: str | None) -> dict[str, Any]:
        # An HttpApi's Auth with Globals.HttpApi merged in; the implicit API (no ApiId) has the Globals' alone.
        global_props = (self.document.get("Globals") or {}).get("HttpApi") or {}
        own = (self.resources_of_type("AWS::Serverless::HttpApi").get(api_id or "") or {}).get("Properties") or {}
        auth: dict[str, Any] = merge_globals(global_props, own).get("Auth") or {}
        return auth

    def http_authorizers(self, identities: Mapping[str, ResourceIdentity]) -> dict[str, LambdaAuthorizer]:
        """The Lambda authorizers declared on the template's HttpApis, by name."""
        function_by_arn = {
            identity.attributes.get("Arn"): logical_id
            for logical_id, identity in identities.items()
            if logical_id in self.resources_of_type("AWS::Serverless::Function")
        }
        resolver = self.resolver(identities)
        authorizers: dict[str, LambdaAuthorizer] = {}
        for api_id in self.resources_of_type("AWS::Serverless::HttpApi"):
            declared = self._http_api_auth(api_id).get("Authorizers") or {}
            for name, config in declared.items():
                if "FunctionArn" not in config:
                    raise TemplateError(f"{api_id}: authorizer {name} is not a Lambda authorizer (JWT is not local)")
                function_id = function_by_arn.get(resolver.resolve(config["FunctionArn"]))
                if function_id is None:
                    raise TemplateError(f"{api_id}: authorizer {name} does not point at a function of this template")
                payload_format = str(config.get("AuthorizerPayloadFormatVersion", "2.0"))
                if payload_format != "2.0":
                    raise TemplateError(f"{api_id}: authorizer {name} uses payload {payload_format}; 2.0 runs locally")
                identity = config.get("Identity") or {}
                authorizers[name] = LambdaAuthorizer(
                    name=name,
                    function_id=function_id,
                    payload_format=payload_format,
                    simple_responses=bool(config.get("EnableSimpleResponses", False)),
                    identity_headers=tuple(identity.get("Headers") or ()),
                    identity_query_strings=tuple(identity.get("QueryStrings") or ()),
                    ttl_seconds=int(identity.get("ReauthorizeEvery", 0)),
                )
        return authorizers

    # AppSync Events ---------------------------------------------------------------------------------------------------

    def event_api(self, identities: Mapping[str, ResourceIdentity]) -> EventApiSpec | None:
        """The template's Event API (an ``AWS::AppSync::Api`` with an ``EventConfig``) and its namespaces, or None.

        Only what runs on one machine is accepted: the AWS_LAMBDA and AWS_IAM auth types, DIRECT Lambda handlers behind
        AWS_LAMBDA data sources. Anything else (Cognito, OIDC, API keys, APPSYNC_JS code handlers) is a TemplateError
        rather than an API that silently behaves differently from AWS.
        """
        resolver = self.resolver(identities)
        apis = {
            logical_id: props
            for logical_id, resource in self.resources_of_type("AWS::AppSync::Api").items()
            if "EventConfig" in (props := resolver.resolve(resource.get("Properties") or {}))
        }
        if not apis:
            return None
        if len(apis) > 1:
            raise TemplateError(f"the local runtime serves one Event API, not {', '.join(apis)}")
        ((logical_id, props),) = apis.items()
        identity = identities[logical_id]
        config = props["EventConfig"]
        functions = self._functions_by_arn(identities)
        authorizer: EventAuthorizer | None = None
        auth_types: list[str] = []
        for provider in config.get("AuthProviders") or []:
            auth_type = str(provider.get("AuthType"))
            if auth_type == AWS_LAMBDA:
                authorizer = _event_authorizer(provider.get("LambdaAuthorizerConfig") or {}, functions, logical_id)
            elif auth_type != AWS_IAM:
                raise TemplateError(
                    f"{logical_id}: auth type {auth_type} is not served locally (AWS_LAMBDA, AWS_IAM are)"
                )
            auth_types.append(auth_type)

        def modes(value: Any, where: str) -> tuple[str, ...]:
            named = tuple(str(mode.get("AuthType")) for mode in value or [])
            if not named:
                raise TemplateError(f"{logical_id}: {where} names no auth mode")
            unknown = sorted(set(named) - set(auth_types))
            if unknown:
                raise TemplateError(f"{logical_id}: {where} uses {', '.join(unknown)}, which is not in AuthProviders")
            return named

        publish = modes(config.get("DefaultPublishAuthModes"), "DefaultPublishAuthModes")
        subscribe = modes(config.get("DefaultSubscribeAuthModes"), "DefaultSubscribeAuthModes")
        data_sources = self._event_data_sources(identity.attributes["ApiId"], resolver, functions)
        namespaces: dict[str, ChannelNamespaceSpec] = {}
        for namespace_id, resource in self.resources_of_type("AWS::AppSync::ChannelNamespace").items():
            namespace = resolver.resolve(resource.get("Properties") or {})
            if namespace.get("ApiId") != identity.attributes["ApiId"]:
                continue
            name = str(namespace.get("Name"))
            if not _NAMESPACE_NAME.fullmatch(name) or name in namespaces:
                raise TemplateError(f"{namespace_id}: Name {name!r} is not a valid channel namespace name, or taken")
            if "CodeHandlers" in namespace or "CodeS3Location" in namespace:
                raise TemplateError(f"{namespace_id}: code handlers (APPSYNC_JS) are not emulated locally; use DIRECT")
            handlers = namespace.get("HandlerConfigs") or {}
            namespaces[name] = ChannelNamespaceSpec(
                name=name,
                publish_auth=modes(namespace["PublishAuthModes"], f"{namespace_id}.PublishAuthModes")
                if "PublishAuthModes" in namespace
                else publish,
                subscribe_auth=modes(namespace["SubscribeAuthModes"], f"{namespace_id}.SubscribeAuthModes")
                if "SubscribeAuthModes" in namespace
                else subscribe,
                on_publish=_channel_handler(handlers.get("OnPublish"), data_sources, f"{namespace_id}.OnPublish"),
                on_subscribe=_channel_handler(handlers.get("OnSubscribe"), data_sources, f"{namespace_id}.OnSubscribe"),
            )
        return EventApiSpec(
            logical_id=logical_id,
            api_id=identity.attributes["ApiId"],
            name=str(props.get("Name", logical_id)),
            http_domain=identity.attributes["Dns.Http"],
            realtime_domain=identity.attributes["Dns.Realtime"],
            auth_types=tuple(auth_types),
            connection_auth=modes(config.get("ConnectionAuthModes"), "ConnectionAuthModes"),
            namespaces=namespaces,
            authorizer=authorizer,
        )

    def _event_data_sources(
        self, api_id: str, resolver: Resolver, functions: Mapping[str, str]
    ) -> dict[str, str | TemplateError]:
        # Name -> the function behind it; a data source DIRECT handlers cannot use is an error once a handler names it.
        found: dict[str, str | TemplateError] = {}
        for logical_id, resource in self.resources_of_type("AWS::AppSync::DataSource").items():
            props = resolver.resolve(resource.get("Properties") or {})
            if props.get("ApiId") != api_id:
                continue
            arn = (props.get("LambdaConfig") or {}).get("LambdaFunctionArn")
            if props.get("Type") != "AWS_LAMBDA":
                found[str(props["Name"])] = TemplateError(
                    f"{logical_id}: DIRECT handlers need an AWS_LAMBDA data source"
                )
            else:
                found[str(props["Name"])] = _invoked_function(arn, functions, f"{logical_id}.LambdaConfig")
        return found

    def _functions_by_arn(self, identities: Mapping[str, ResourceIdentity]) -> dict[str, str]:
        return {
            identities[function_id].attributes["Arn"]: function_id
            for function_id in self.function_ids()
            if function_id in identities
        }


def _invoked_function(arn: Any, functions: Mapping[str, str], where: str) -> str:
    # A function, version or alias ARN (arn:aws:lambda:<region>:<account>:function:<name>[:<qualifier>]).
    unqualified = ":".join(str(arn).split(":")[:7])
    if unqualified not in functions:
        raise TemplateError(f"{where}: {arn!r} is not a function of this template")
    return functions[unqualified]


def _event_authorizer(config: Mapping[str, Any], functions: Mapping[str, str], where: str) -> EventAuthorizer:
    ttl_seconds = int(config.get("AuthorizerResultTtlInSeconds", 0))
    if not 0 <= ttl_seconds <= 3600:
        raise TemplateError(f"{where}: AuthorizerResultTtlInSeconds must be between 0 and 3600")
    expression = config.get("IdentityValidationExpression")
    try:
        re.compile(str(expression or ""))
    except re.error as exc:
        raise TemplateError(f"{where}: IdentityValidationExpression is not a regular expression: {exc}") from exc
    return EventAuthorizer(
        function_id=_invoked_function(config.get("AuthorizerUri"), functions, f"{where}.AuthorizerUri"),
        ttl_seconds=ttl_seconds,
        identity_validation=str(expression) if expression else None,
    )


def _channel_handler(
    config: Mapping[str, Any] | None, data_sources: Mapping[str, str | TemplateError], where: str
) -> ChannelHandler | None:
    if config is None:
        return None
    if config.get("Behavior") != "DIRECT":
        raise TemplateError(
            f"{where}: Behavior {config.get('Behavior')} is not emulated locally (APPSYNC_JS); use DIRECT"
        )
    integration = config.get("Integration") or {}
    name = str(integration.get("DataSourceName"))
    function_id = data_sources.get(name)
    if function_id is None:
        raise TemplateError(f"{where}: DataSourceName {name!r} is not a data source of this API")
    if isinstance(function_id, TemplateError):
        raise function_id
    invoke_type = str((integration.get("LambdaConfig") or {}).get("InvokeType", REQUEST_RESPONSE))
    if invoke_type not in (REQUEST_RESPONSE, EVENT):
        raise TemplateError(f"{where}: InvokeType must be REQUEST_RESPONSE or EVENT")
    return ChannelHandler(function_id, name, invoke_type)


def _sqs_event_source(
    function_id: str,
    event_name: str,
    queue_arn: Any,
    props: Mapping[str, Any],
    queues_by_arn: Mapping[str, QueueSpec],
    where: str,
) -> SqsEventSource:
    # A SAM SQS event and an AWS::Lambda::EventSourceMapping take these properties under the same names.
    queue = queues_by_arn.get(str(queue_arn))
    if queue is None:
        raise TemplateError(f"{where}: Queue {queue_arn!r} is not a queue of this template")
    if "FilterCriteria" in props:
        raise TemplateError(f"{where}: FilterCriteria is not supported by the local runtime")
    batch_size = int(props.get("BatchSize", 10))
    window = int(props.get("MaximumBatchingWindowInSeconds", 0))
    max_batch = SQS_FIFO_MAX_BATCH_SIZE if queue.fifo else SQS_MAX_BATCH_SIZE
    if not 1 <= batch_size <= max_batch:
        raise TemplateError(f"{where}: BatchSize must be between 1 and {max_batch}")
    if not 0 <= window <= SQS_MAX_BATCHING_WINDOW_SECONDS:
        raise TemplateError(f"{where}: MaximumBatchingWindowInSeconds must be between 0 and 300")
    if batch_size > SQS_FIFO_MAX_BATCH_SIZE and window == 0:
        # What Lambda's CreateEventSourceMapping answers.
        raise TemplateError(f"{where}: a BatchSize over 10 needs MaximumBatchingWindowInSeconds of 1+")
    response_types = list(props.get("FunctionResponseTypes") or [])
    if set(response_types) - {"ReportBatchItemFailures"}:
        raise TemplateError(f"{where}: FunctionResponseTypes takes only ReportBatchItemFailures")
    scaling = props.get("ScalingConfig") or {}
    maximum_concurrency = int(scaling["MaximumConcurrency"]) if "MaximumConcurrency" in scaling else None
    if maximum_concurrency is not None and not 2 <= maximum_concurrency <= 1000:
        raise TemplateError(f"{where}: ScalingConfig.MaximumConcurrency must be between 2 and 1000")
    return SqsEventSource(
        function_id=function_id,
        event_name=event_name,
        queue=queue,
        batch_size=batch_size,
        batching_window_seconds=window,
        report_batch_item_failures="ReportBatchItemFailures" in response_types,
        maximum_concurrency=maximum_concurrency,
        enabled=_boolean_property(props.get("Enabled", True)),
    )


def physical_name(logical_id: str) -> str:
    """The physical name the local stack gives a resource, e.g. ``leaderboard-local-UsersTable``."""
    return f"{STACK_NAME}-{logical_id}"


def redrive_policy(value: Any, where: str) -> dict[str, Any] | None:
    """A queue's ``RedrivePolicy`` (an object in templates, or its JSON text) as a dict, or None."""
    if value is None or value == "":
        return None
    policy = json.loads(value) if isinstance(value, str) else value
    if not isinstance(policy, dict) or not {"deadLetterTargetArn", "maxReceiveCount"} <= set(policy):
        raise TemplateError(f"{where}: RedrivePolicy needs deadLetterTargetArn and maxReceiveCount")
    return policy


# The states of an EventBridge rule (ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS is enabled, for more events).
RULE_STATES = ("ENABLED", "DISABLED", "ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS")


def _rule_enabled(props: Mapping[str, Any], where: str) -> bool:
    # SAM takes Enabled (a boolean) or State, not both.
    if "Enabled" in props and "State" in props:
        raise TemplateError(f"{where}: a Schedule takes Enabled or State, not both")
    if "State" not in props:
        return _boolean_property(props.get("Enabled", True))
    if props["State"] not in RULE_STATES:
        raise TemplateError(f"{where}: State must be one of {', '.join(RULE_STATES)}")
    return bool(props["State"] != "DISABLED")


def _rule_input(value: Any, where: str) -> str | None:
    # EventBridge's constant input is JSON text; the function gets it in place of the scheduled event.
    if value is None:
        return None
    try:
        json.loads(str(value))
    except ValueError as exc:
        raise TemplateError(f"{where}: Input must be JSON text ({exc})") from exc
    return str(value)


def _boolean_property(value: Any) -> bool:
    # CloudFormation takes true/false as booleans or as strings.
    return value is True or str(value).lower() == "true"


def _ref_target(value: Any) -> str | None:
    if isinstance(value, dict) and set(value) == {"Ref"}:
        return str(value["Ref"])
    return None


def _environment_value(value: Any) -> str:
    # Lambda environment values are strings; YAML booleans come through as "true"/"false" like CloudFormation.
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
