"""The local WebSocket API: what it reads from the template, the events it sends, and API Gateway's behaviour around
them (authorizer answers, route selection, ordering, timeouts, limits); functions are fakes."""

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import WSMsgType, WSServerHandshakeError
from aiohttp.test_utils import TestClient, TestServer, make_mocked_request

from local.services import Endpoints
from local.template import (
    ResourceIdentity,
    Template,
    TemplateError,
    WebSocketApiSpec,
    WebSocketAuthorizer,
    WebSocketRoute,
)
from local.websocket import (
    MAX_MESSAGE_BYTES,
    Connection,
    WebSocketGateway,
    authorizer_context,
    authorizer_event,
    connect_event,
    disconnect_event,
    gateway_message,
    identity_values,
    local_urls,
    message_event,
    new_id,
    route_response,
    select_route,
)
from local.workers import Invocation, lambda_environment
from tests.unit.fake_functions import Behaviour, FakeFunctions

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SECRET_ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:leaderboard-local-SigningKeySecret-AbCdEf"
NOW = 1_700_000_100.5  # 14/Nov/2023:22:15:00 +0000


# --- What the template says ---


@pytest.fixture(scope="module")
def template() -> Template:
    return Template(PROJECT_ROOT / "template.yaml")


@pytest.fixture(scope="module")
def identities(template: Template) -> dict[str, ResourceIdentity]:
    # Queues and the secret get their identities from moto at start; the rest the runtime picks itself.
    queues = {
        logical_id: ResourceIdentity(
            f"http://q/{logical_id}", {"Arn": f"arn:aws:sqs:us-east-1:123456789012:{logical_id}"}
        )
        for logical_id in template.resources_of_type("AWS::SQS::Queue")
    }
    secret = {"SigningKeySecret": ResourceIdentity(SECRET_ARN, {"Id": SECRET_ARN})}
    return template.default_identities() | queues | secret


def test_the_websocket_api_of_template_yaml_is_read_from_its_raw_resources(
    template: Template, identities: dict[str, ResourceIdentity]
) -> None:
    api = template.websocket_api(identities)

    assert api is not None
    assert (api.logical_id, api.stage, api.route_selection_path) == ("WebSocketApi", "live", ("action",))
    assert api.api_id == identities["WebSocketApi"].ref
    connect = api.routes["$connect"]
    assert connect.authorizer is not None
    assert (connect.function_id, connect.authorizer.function_id) == (
        "OpenConnectionFunction",
        "AuthorizeConnectionFunction",
    )
    assert connect.authorizer.identity_sources == ("route.request.querystring.token",)
    assert api.routes["$disconnect"].function_id == "CloseConnectionFunction"
    # Only the routes with a RouteResponse answer the sender.
    assert {key: route.route_response for key, route in api.routes.items()} == {
        "$connect": False,
        "$disconnect": False,
        "top10": True,
    }
    assert api.route_arn("$connect") == f"arn:aws:execute-api:us-east-1:123456789012:{api.api_id}/live/$connect"


def test_api_gateway_resources_get_stable_ids_and_a_stage_is_named_by_its_stage_name(
    template: Template, identities: dict[str, ResourceIdentity]
) -> None:
    api_identity = identities["WebSocketApi"]

    assert len(api_identity.ref) == 10
    assert api_identity.ref.isalnum()
    assert api_identity.attributes["ApiEndpoint"] == f"wss://{api_identity.ref}.execute-api.us-east-1.amazonaws.com"
    assert identities["LiveStage"].ref == "live"
    assert identities["Top10Route"].attributes["RouteId"] == identities["Top10Route"].ref
    assert template.default_identities()["ConnectIntegration"] == identities["ConnectIntegration"]  # stable


def test_functions_get_the_local_connections_endpoint_where_the_template_names_the_deployed_one(
    template: Template, identities: dict[str, ResourceIdentity]
) -> None:
    api = template.websocket_api(identities)
    assert api is not None
    spec = template.function("PostToConnectionsFunction", identities)
    endpoints = Endpoints("http://127.0.0.1:5000", "redis://127.0.0.1:6379/0", 2773, "token")
    endpoints.url_rewrites = local_urls(api, "127.0.0.1", 3001)

    environment = lambda_environment(spec, endpoints)

    assert spec.environment["CONNECTIONS_ENDPOINT"] == api.connections_url
    assert api.connections_url == f"https://{api.api_id}.execute-api.us-east-1.amazonaws.com/live"
    assert environment["CONNECTIONS_ENDPOINT"] == "http://127.0.0.1:3001/live"
    assert environment["CONNECTIONS_TABLE"] == spec.environment["CONNECTIONS_TABLE"]  # other values are kept
    assert endpoints.local_url(f"{api.url}?token=x") == "ws://127.0.0.1:3001/live?token=x"
    # Only the API's own address: a longer host name that starts the same is someone else's.
    assert endpoints.local_url(f"https://{api.api_id}.execute-api.us-east-1.amazonaws.com.evil/x").startswith("https")


TEMPLATE = """
Resources:
  Api:
    Type: AWS::ApiGatewayV2::Api
    Properties: {{Name: live, ProtocolType: WEBSOCKET, RouteSelectionExpression: "$request.body.kind.name"}}
  Auth:
    Type: AWS::ApiGatewayV2::Authorizer
    Properties:
      ApiId: !Ref Api
      Name: ByHeader
      AuthorizerType: {authorizer_type}
      IdentitySource: [{identity_source}]
      AuthorizerUri: !Sub "arn:aws:apigateway:${{AWS::Region}}:lambda:path/2015-03-31/functions/${{Fn.Arn}}/invocations"
  Integration:
    Type: AWS::ApiGatewayV2::Integration
    Properties: {{ApiId: !Ref Api, IntegrationType: {integration_type}, IntegrationUri: !GetAtt Fn.Arn,
                 TimeoutInMillis: 5000}}
  ConnectRoute:
    Type: AWS::ApiGatewayV2::Route
    Properties: {{ApiId: !Ref Api, RouteKey: $connect, AuthorizationType: CUSTOM, AuthorizerId: !Ref Auth,
                 Target: !Join ["/", [integrations, !Ref Integration]]}}
  DefaultRoute:
    Type: AWS::ApiGatewayV2::Route
    Properties: {{ApiId: !Ref Api, RouteKey: $default, AuthorizationType: {default_authorization},
                 Target: !Sub "integrations/${{Integration}}"}}
  DefaultResponse:
    Type: AWS::ApiGatewayV2::RouteResponse
    Properties: {{ApiId: !Ref Api, RouteId: !Ref DefaultRoute, RouteResponseKey: $default}}
  Stage:
    Type: AWS::ApiGatewayV2::Stage
    Properties: {{ApiId: !Ref Api, StageName: !Ref StageName, StageVariables: {{tier: gold}}}}
{extra}
  Fn:
    Type: AWS::Serverless::Function
    Properties: {{CodeUri: code/, Handler: app.handler, Runtime: python3.13}}
Parameters:
  StageName: {{Type: String, Default: v1}}
"""

VALID = {
    "authorizer_type": "REQUEST",
    "identity_source": "route.request.header.Auth",
    "integration_type": "AWS_PROXY",
    "default_authorization": "NONE",
    "extra": "",
}


def websocket_template(tmp_path: Path, **changes: str) -> Template:
    path = tmp_path / "template.yaml"
    path.write_text(TEMPLATE.format(**(VALID | changes)))
    return Template(path)


def test_a_default_route_a_plain_function_arn_stage_variables_and_a_header_identity_source(tmp_path: Path) -> None:
    template = websocket_template(tmp_path)

    api = template.websocket_api(template.default_identities())

    assert api is not None
    assert (api.stage, api.stage_variables, api.route_selection_path) == ("v1", {"tier": "gold"}, ("kind", "name"))
    assert api.routes["$default"] == WebSocketRoute("$default", "Fn", None, route_response=True, timeout_ms=5000)
    assert api.routes["$connect"].authorizer == WebSocketAuthorizer(
        "Auth", "ByHeader", "Fn", ("route.request.header.Auth",)
    )


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"integration_type": "HTTP_PROXY"}, "only AWS_PROXY"),
        ({"authorizer_type": "JWT"}, "Lambda REQUEST authorizer"),
        ({"identity_source": "context.identity.sourceIp"}, "identity source 'context.identity.sourceIp'"),
        ({"default_authorization": "AWS_IAM"}, "AuthorizationType AWS_IAM"),
        ({"default_authorization": "CUSTOM"}, "only \\$connect can have an authorizer"),
        (
            {"extra": "  Stage2: {Type: AWS::ApiGatewayV2::Stage, Properties: {ApiId: !Ref Api, StageName: v2}}"},
            "one stage, not 2",
        ),
        (
            {"extra": "  Api2: {Type: AWS::ApiGatewayV2::Api, Properties: {ProtocolType: WEBSOCKET}}"},
            "one WebSocket API",
        ),
    ],
)
def test_what_would_behave_differently_locally_is_refused(
    tmp_path: Path, changes: dict[str, str], message: str
) -> None:
    template = websocket_template(tmp_path, **changes)

    with pytest.raises(TemplateError, match=message):
        template.websocket_api(template.default_identities())


def test_a_route_selection_expression_other_than_a_body_field_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "template.yaml"
    path.write_text(TEMPLATE.format(**VALID).replace("$request.body.kind.name", "${request.header.x}"))
    template = Template(path)

    with pytest.raises(TemplateError, match="RouteSelectionExpression"):
        template.websocket_api(template.default_identities())


def test_a_template_without_a_websocket_api_has_none(tmp_path: Path) -> None:
    path = tmp_path / "template.yaml"
    path.write_text("Resources:\n  Http: {Type: AWS::ApiGatewayV2::Api, Properties: {ProtocolType: HTTP}}\n")
    template = Template(path)

    assert template.websocket_api(template.default_identities()) is None
    assert template.default_identities()["Http"].attributes["ApiEndpoint"].startswith("https://")


# --- The events ---

API = WebSocketApiSpec(
    logical_id="Api",
    api_id="a1b2c3d4e5",
    name="live",
    stage="live",
    route_selection_expression="$request.body.action",
    routes={
        "$connect": WebSocketRoute(
            "$connect",
            "Connect",
            WebSocketAuthorizer("Auth", "Token", "Authorize", ("route.request.querystring.token",)),
        ),
        "$disconnect": WebSocketRoute("$disconnect", "Disconnect"),
        "top10": WebSocketRoute("top10", "Top10", route_response=True),
        "fire": WebSocketRoute("fire", "Fire"),
    },
)
REQUEST_ID = "Rq3qbFYoIAMF5Yw="


def a_connection(query: list[tuple[str, str]] | None = None) -> Connection:
    return Connection(
        connection_id="L0SM9cOFvHcCIhw=",
        headers=[
            ("Host", "127.0.0.1:3001"),
            ("Sec-WebSocket-Version", "13"),
            ("User-Agent", "test-client/1.0"),
            ("X-Forwarded-For", "127.0.0.1"),
        ],
        query=[("token", "t-1"), ("tag", "a"), ("tag", "b")] if query is None else query,
        source_ip="127.0.0.1",
        user_agent="test-client/1.0",
        domain_name="127.0.0.1:3001",
        connected_at=1_700_000_000.25,
    )


def expected_context(route_key: str, event_type: str) -> dict[str, Any]:
    return {
        "routeKey": route_key,
        "eventType": event_type,
        "extendedRequestId": REQUEST_ID,
        "requestTime": "14/Nov/2023:22:15:00 +0000",
        "messageDirection": "IN",
        "stage": "live",
        "connectedAt": 1_700_000_000_250,
        "requestTimeEpoch": 1_700_000_100_500,
        "identity": {"sourceIp": "127.0.0.1", "userAgent": "test-client/1.0"},
        "requestId": REQUEST_ID,
        "domainName": "127.0.0.1:3001",
        "connectionId": "L0SM9cOFvHcCIhw=",
        "apiId": "a1b2c3d4e5",
    }


HANDSHAKE = {
    "headers": {
        "Host": "127.0.0.1:3001",
        "Sec-WebSocket-Version": "13",
        "User-Agent": "test-client/1.0",
        "X-Forwarded-For": "127.0.0.1",
    },
    "multiValueHeaders": {
        "Host": ["127.0.0.1:3001"],
        "Sec-WebSocket-Version": ["13"],
        "User-Agent": ["test-client/1.0"],
        "X-Forwarded-For": ["127.0.0.1"],
    },
    "queryStringParameters": {"token": "t-1", "tag": "b"},
    "multiValueQueryStringParameters": {"token": ["t-1"], "tag": ["a", "b"]},
}


def test_the_authorizer_gets_api_gateways_websocket_request_event() -> None:
    event = authorizer_event(API, a_connection(), REQUEST_ID, NOW)

    assert event == {
        "type": "REQUEST",
        "methodArn": "arn:aws:execute-api:us-east-1:123456789012:a1b2c3d4e5/live/$connect",
        **HANDSHAKE,
        "stageVariables": {},
        "requestContext": expected_context("$connect", "CONNECT"),
    }


def test_the_connect_route_gets_the_handshake_and_the_authorizers_principal_and_context() -> None:
    connection = a_connection()
    connection.authorizer = {"principalId": "u-1", "user_id": "u-1", "level": 3}

    event = connect_event(API, connection, REQUEST_ID, NOW)

    context = expected_context("$connect", "CONNECT") | {
        "authorizer": {"principalId": "u-1", "user_id": "u-1", "level": 3}
    }
    assert event == {**HANDSHAKE, "requestContext": context, "isBase64Encoded": False}


def test_without_a_query_string_the_events_have_no_query_parameters() -> None:
    event = connect_event(API, a_connection(query=[]), REQUEST_ID, NOW)

    assert "queryStringParameters" not in event
    assert "multiValueQueryStringParameters" not in event


def test_a_message_event_carries_the_body_as_text_and_the_connections_authorizer_context() -> None:
    connection = a_connection()
    connection.authorizer = {"principalId": "u-1", "user_id": "u-1"}

    event = message_event(API, connection, "top10", '{"action":"top10"}', REQUEST_ID, "Mz1MsYoIAMF5Yw8=", NOW)

    context = expected_context("top10", "MESSAGE") | {
        "authorizer": {"principalId": "u-1", "user_id": "u-1"},
        "messageId": "Mz1MsYoIAMF5Yw8=",
    }
    assert event == {"requestContext": context, "body": '{"action":"top10"}', "isBase64Encoded": False}


def test_a_disconnect_event_says_why_and_has_api_gateways_odd_headers() -> None:
    event = disconnect_event(API, a_connection(), (1001, "Going away"), REQUEST_ID, NOW)

    headers = {"Host": "127.0.0.1:3001", "x-api-key": "", "X-Forwarded-For": "", "x-restapi": ""}
    assert event == {
        "headers": headers,
        "multiValueHeaders": {name: [value] for name, value in headers.items()},
        "requestContext": expected_context("$disconnect", "DISCONNECT")
        | {"disconnectStatusCode": 1001, "disconnectReason": "Going away"},
        "isBase64Encoded": False,
    }


def test_stage_variables_reach_every_route() -> None:
    api = WebSocketApiSpec("Api", "a1", "live", "live", "$request.body.action", {}, {"tier": "gold"})

    assert message_event(api, a_connection(), "x", "{}", REQUEST_ID, "m", NOW)["stageVariables"] == {"tier": "gold"}
    assert authorizer_event(api, a_connection(), REQUEST_ID, NOW)["stageVariables"] == {"tier": "gold"}


def test_the_handshake_keeps_the_clients_headers_and_appends_its_address_to_x_forwarded_for() -> None:
    request = make_mocked_request(
        "GET",
        "/live?token=t-1&token=t-2",
        headers={"Host": "127.0.0.1:3001", "User-Agent": "ua/1", "X-Forwarded-For": "10.0.0.9"},
    )

    connection = Connection.from_handshake(request)

    assert connection.header("host") == "127.0.0.1:3001"
    assert connection.header("X-Forwarded-For") == f"10.0.0.9, {connection.source_ip}"
    assert connection.header("X-Forwarded-Proto") == "http"
    assert (connection.query_parameter("token"), connection.user_agent) == ("t-2", "ua/1")


def test_ids_look_like_api_gateways() -> None:
    ids = {new_id() for _ in range(100)}

    assert len(ids) == 100
    assert all(len(found) == 16 and found.endswith("=") for found in ids)


# --- Routes, answers, the authorizer ---


@pytest.mark.parametrize(
    ("body", "route_key"),
    [
        ('{"action": "top10"}', "top10"),
        ('{"action": "fire", "extra": [1]}', "fire"),
        ('{"action": "nope"}', None),
        ('{"action": "$disconnect"}', None),
        ('{"action": 7}', None),
        ('{"other": "top10"}', None),
        ("[1, 2]", None),
        ("top10", None),
    ],
)
def test_a_message_is_routed_by_the_route_selection_expression(body: str, route_key: str | None) -> None:
    assert select_route(API, body) == route_key


def test_without_a_matching_route_a_message_goes_to_default_when_there_is_one() -> None:
    api = WebSocketApiSpec(
        "Api", "a1", "n", "live", "$request.body.action", {"$default": WebSocketRoute("$default", "D")}
    )

    assert select_route(api, "not json") == "$default"
    assert select_route(api, '{"action": "top10"}') == "$default"


def test_api_gateways_own_messages_keep_its_spacing() -> None:
    assert gateway_message("Forbidden", "L0SM9cOFvHcCIhw=", REQUEST_ID) == (
        '{"message": "Forbidden", "connectionId":"L0SM9cOFvHcCIhw=", "requestId":"Rq3qbFYoIAMF5Yw="}'
    )


@pytest.mark.parametrize(
    ("result", "sent"),
    [
        ({"statusCode": 200, "body": '{"type":"top10"}'}, '{"type":"top10"}'),
        ({"statusCode": 500, "body": "still sent"}, "still sent"),
        ({"statusCode": 200, "body": "aGk=", "isBase64Encoded": True}, b"hi"),
        ({"statusCode": 200}, None),
        (None, None),
        ("plain text", "plain text"),
    ],
)
def test_a_route_response_sends_the_integrations_body(result: Any, sent: str | bytes | None) -> None:
    assert route_response(result) == sent


CONNECT_ARN = API.route_arn("$connect")


def policy(effect: str, resource: str = CONNECT_ARN, context: Any = None) -> dict[str, Any]:
    statement = {"Action": "execute-api:Invoke", "Effect": effect, "Resource": resource}
    answer: dict[str, Any] = {
        "principalId": "u-1",
        "policyDocument": {"Version": "2012-10-17", "Statement": [statement]},
    }
    if context is not None:
        answer["context"] = context
    return answer


@pytest.mark.parametrize(
    ("result", "decision"),
    [
        (policy("Allow", context={"user_id": "u-1", "n": 2}), {"principalId": "u-1", "user_id": "u-1", "n": 2}),
        (policy("Allow", resource="arn:aws:execute-api:us-east-1:123456789012:a1b2c3d4e5/*"), {"principalId": "u-1"}),
        (policy("Deny"), 403),
        (policy("Allow", resource=API.route_arn("top10")), 403),
        (policy("Allow", context={"nested": {"a": 1}}), 500),
        ({"policyDocument": {"Statement": []}}, 500),
        ({"isAuthorized": True}, 500),
        ("Allow", 500),
    ],
)
def test_the_authorizers_iam_policy_decides(result: Any, decision: dict[str, Any] | int) -> None:
    assert authorizer_context(result, CONNECT_ARN) == decision


def test_a_missing_or_empty_identity_source_means_no_authorizer_call() -> None:
    authorizer = WebSocketAuthorizer(
        "A", "A", "Authorize", ("route.request.header.auth", "route.request.querystring.token")
    )
    connection = a_connection()

    assert identity_values(authorizer, connection, API) is None  # no Auth header
    connection.headers.append(("AUTH", "h-1"))
    assert identity_values(authorizer, connection, API) == ["h-1", "t-1"]
    connection.query = [("token", "")]
    assert identity_values(authorizer, connection, API) is None


# --- The gateway, with fake functions ---


def allow(event: dict[str, Any]) -> dict[str, Any]:
    return policy("Allow", resource=event["methodArn"], context={"user_id": "u-1"})


def ok(event: dict[str, Any]) -> dict[str, Any]:
    return {"statusCode": 200}


def functions_with(**behaviours: Behaviour) -> FakeFunctions:
    return FakeFunctions(**({"Authorize": allow, "Connect": ok, "Disconnect": ok} | behaviours))


def serve(gateway: WebSocketGateway, scenario: Callable[[TestClient[Any, Any]], Awaitable[Any]]) -> Any:
    async def run() -> Any:
        async with TestClient(TestServer(gateway.app())) as client:
            return await scenario(client)

    return asyncio.run(run())


async def wait_for(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    for _ in range(int(seconds / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the condition never held")


def quiet(functions: FakeFunctions, **options: Any) -> WebSocketGateway:
    return WebSocketGateway(API, functions, say=lambda _: None, **options)


def test_a_connections_messages_are_handled_one_after_the_other() -> None:
    finished: list[str] = []

    async def top10(event: dict[str, Any]) -> dict[str, Any]:
        tag = json.loads(event["body"])["tag"]
        await asyncio.sleep(0.3 if tag == "first" else 0)
        finished.append(tag)
        return {"statusCode": 200, "body": tag}

    async def scenario(client: TestClient[Any, Any]) -> list[str]:
        socket = await client.ws_connect("/live?token=t")
        for tag in ("first", "second", "third"):
            await socket.send_str(json.dumps({"action": "top10", "tag": tag}))
        return [(await socket.receive(timeout=5)).data for _ in range(3)]

    answers = serve(quiet(functions_with(Top10=top10)), scenario)

    assert answers == finished == ["first", "second", "third"]


def test_an_idle_connection_is_closed_with_1001_and_disconnect_says_so() -> None:
    functions = functions_with()

    async def scenario(client: TestClient[Any, Any]) -> tuple[Any, Any]:
        socket = await client.ws_connect("/live?token=t")
        closed = await socket.receive(timeout=5)
        await wait_for(lambda: bool(functions.events_of("Disconnect")))
        return closed.type, closed.data

    assert serve(quiet(functions, idle_timeout_seconds=0.2), scenario) == (WSMsgType.CLOSE, 1001)
    context = functions.events_of("Disconnect")[0]["requestContext"]
    assert (context["disconnectStatusCode"], context["disconnectReason"]) == (1001, "Going away")


def test_messages_either_way_keep_a_connection_alive_but_not_past_its_time_limit() -> None:
    async def scenario(client: TestClient[Any, Any]) -> tuple[int, Any]:
        socket = await client.ws_connect("/live?token=t")
        answered = 0
        for _ in range(8):  # 0.4 s of traffic: twice the idle timeout
            await socket.send_str('{"action": "top10"}')
            await socket.receive(timeout=5)
            answered += 1
            await asyncio.sleep(0.05)
        closed = await socket.receive(timeout=5)
        return answered, closed.data

    gateway = quiet(
        functions_with(Top10=lambda event: {"body": "board"}), idle_timeout_seconds=0.2, max_connection_seconds=0.6
    )

    assert serve(gateway, scenario) == (8, 1001)


@pytest.mark.parametrize(
    ("connect", "status"),
    [
        (lambda event: {"statusCode": 409, "body": "taken"}, 409),
        (lambda event: {"statusCode": "200"}, 502),
        (lambda event: 1 / 0, 502),
    ],
)
def test_the_connect_integration_can_refuse_the_handshake(connect: Behaviour, status: int) -> None:
    functions = functions_with(Connect=connect)

    async def scenario(client: TestClient[Any, Any]) -> int:
        with pytest.raises(WSServerHandshakeError) as refused:
            await client.ws_connect("/live?token=t")
        return refused.value.status

    assert serve(quiet(functions), scenario) == status
    assert functions.events_of("Disconnect") == []  # never connected, never disconnected


def test_the_connect_integration_chooses_the_subprotocol() -> None:
    functions = functions_with(Connect=lambda event: {"statusCode": 200, "headers": {"Sec-WebSocket-Protocol": "v2"}})

    async def scenario(client: TestClient[Any, Any]) -> str | None:
        socket = await client.ws_connect("/live?token=t", protocols=("v1", "v2"))
        return socket.protocol

    assert serve(quiet(functions), scenario) == "v2"


def test_a_fault_of_the_runtime_itself_at_connect_is_500() -> None:
    class BrokenInvoker:
        async def invoke(self, function_id: str, event: Any) -> Invocation:
            raise RuntimeError("the worker could not start")

    async def scenario(client: TestClient[Any, Any]) -> int:
        with pytest.raises(WSServerHandshakeError) as refused:
            await client.ws_connect("/live?token=t")
        return refused.value.status

    assert serve(WebSocketGateway(API, BrokenInvoker(), say=lambda _: None), scenario) == 500


def test_a_binary_frame_closes_with_1003_and_a_message_over_128_kb_with_1009() -> None:
    functions = functions_with(Top10=lambda event: {"body": str(len(event["body"]))})

    async def scenario(client: TestClient[Any, Any]) -> list[Any]:
        seen = []
        binary = await client.ws_connect("/live?token=t")
        await binary.send_bytes(b"\x00\x01")
        seen.append((await binary.receive(timeout=5)).data)
        at_limit = await client.ws_connect("/live?token=t")
        padding = MAX_MESSAGE_BYTES - len('{"action": "top10", "p": ""}')
        await at_limit.send_str(json.dumps({"action": "top10", "p": "x" * padding}))
        seen.append((await at_limit.receive(timeout=5)).data)
        await at_limit.send_str(json.dumps({"action": "top10", "p": "x" * (padding + 1)}))
        seen.append((await at_limit.receive(timeout=5)).data)
        await wait_for(lambda: len(functions.events_of("Disconnect")) == 2)
        return seen

    assert serve(quiet(functions), scenario) == [1003, str(MAX_MESSAGE_BYTES), 1009]
    reasons = sorted(event["requestContext"]["disconnectStatusCode"] for event in functions.events_of("Disconnect"))
    assert reasons == [1003, 1009]


def test_a_close_frame_without_a_status_is_reported_as_1005() -> None:
    functions = functions_with()

    async def scenario(client: TestClient[Any, Any]) -> None:
        socket = await client.ws_connect("/live?token=t")
        await socket._writer.send_frame(b"", WSMsgType.CLOSE)  # what a browser's ws.close() sends
        await socket.receive(timeout=5)
        await wait_for(lambda: bool(functions.events_of("Disconnect")))

    serve(quiet(functions), scenario)

    context = functions.events_of("Disconnect")[0]["requestContext"]
    assert (context["disconnectStatusCode"], context["disconnectReason"]) == (
        1005,
        "Client-side close frame status not set",
    )


def test_a_plain_http_request_is_not_a_handshake_and_connections_need_a_signature() -> None:
    async def scenario(client: TestClient[Any, Any]) -> list[tuple[int, Any]]:
        answers = []
        for method, path, headers in [
            ("GET", "/live", {}),
            ("POST", "/live/@connections/abc=", {}),
            ("POST", "/other/@connections/abc=", {"Authorization": "AWS4-HMAC-SHA256 ..."}),
            ("PUT", "/live/@connections/abc=", {"Authorization": "AWS4-HMAC-SHA256 ..."}),
        ]:
            response = await client.request(method, path, headers=headers, data=b"x")
            answers.append((response.status, await response.json()))
        return answers

    assert serve(quiet(functions_with()), scenario) == [
        (426, {"message": "Upgrade Required"}),
        (403, {"message": "Missing Authentication Token"}),
        (403, {"message": "Forbidden"}),
        (404, {"message": "Not Found"}),
    ]


def test_stopping_closes_every_connection_with_1001_after_running_disconnect() -> None:
    functions = functions_with()
    gateway = quiet(functions)

    async def scenario(client: TestClient[Any, Any]) -> list[Any]:
        sockets = [await client.ws_connect("/live?token=t") for _ in range(3)]
        await gateway.close_all()
        closes = [(await socket.receive(timeout=5)).data for socket in sockets]
        with pytest.raises(WSServerHandshakeError):  # refused while stopping
            await client.ws_connect("/live?token=t")
        return closes

    assert serve(gateway, scenario) == [1001, 1001, 1001]
    assert len(functions.events_of("Disconnect")) == 3
    assert gateway.connection_ids == []
