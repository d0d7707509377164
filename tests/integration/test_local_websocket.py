"""The local WebSocket API over real worker processes, on a small project of its own: stub functions that record the
events they get, a real WebSocket client, and boto3's ``apigatewaymanagementapi`` client on the @connections endpoint.
The last test runs the whole ``python -m local`` and stops it with Ctrl-C.
"""

import asyncio
import json
import signal
import textwrap
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import boto3
import pytest
from botocore.config import Config

from local.in_process import in_process_stack
from local.processes import free_port
from local.services import Endpoints
from local.template import Template
from local.websocket import MAX_MESSAGE_BYTES, WebSocketGateway, local_urls, start
from local.workers import Workers
from tests.integration.conftest import start_runtime, stop_and_check_nothing_is_left

TEMPLATE = """
Transform: AWS::Serverless-2016-10-31
Globals:
  Function:
    Runtime: python3.13
    Timeout: 10
    CodeUri: stubs/
    Environment:
      Variables:
        EVENTS_DIR: {events_dir}
        CONNECTIONS_ENDPOINT: !Sub "https://${{Live}}.execute-api.${{AWS::Region}}.${{AWS::URLSuffix}}/${{LiveStage}}"
Resources:
  Live:
    Type: AWS::ApiGatewayV2::Api
    Properties: {{Name: live, ProtocolType: WEBSOCKET, RouteSelectionExpression: $request.body.action}}
  TokenAuthorizer:
    Type: AWS::ApiGatewayV2::Authorizer
    Properties:
      ApiId: !Ref Live
      Name: TokenInQuery
      AuthorizerType: REQUEST
      IdentitySource: [route.request.querystring.token]
      AuthorizerUri: !Sub "arn:${{AWS::Partition}}:apigateway:${{AWS::Region}}:lambda:path/2015-03-31/functions/\\
        ${{AuthorizeFunction.Arn}}/invocations"
  ConnectRoute:
    Type: AWS::ApiGatewayV2::Route
    Properties: {{ApiId: !Ref Live, RouteKey: $connect, AuthorizationType: CUSTOM, AuthorizerId: !Ref TokenAuthorizer,
                 Target: !Sub "integrations/${{OpenIntegration}}"}}
  OpenIntegration:
    Type: AWS::ApiGatewayV2::Integration
    Properties:
      ApiId: !Ref Live
      IntegrationType: AWS_PROXY
      IntegrationUri: !Sub "arn:${{AWS::Partition}}:apigateway:${{AWS::Region}}:lambda:path/2015-03-31/functions/\\
        ${{OpenFunction.Arn}}/invocations"
  DisconnectRoute:
    Type: AWS::ApiGatewayV2::Route
    Properties: {{ApiId: !Ref Live, RouteKey: $disconnect, Target: !Sub "integrations/${{CloseIntegration}}"}}
  CloseIntegration:
    Type: AWS::ApiGatewayV2::Integration
    Properties: {{ApiId: !Ref Live, IntegrationType: AWS_PROXY, IntegrationUri: !GetAtt CloseFunction.Arn}}
  EchoRoute:
    Type: AWS::ApiGatewayV2::Route
    Properties: {{ApiId: !Ref Live, RouteKey: echo, RouteResponseSelectionExpression: $default,
                 Target: !Sub "integrations/${{EchoIntegration}}"}}
  EchoResponse:
    Type: AWS::ApiGatewayV2::RouteResponse
    Properties: {{ApiId: !Ref Live, RouteId: !Ref EchoRoute, RouteResponseKey: $default}}
  EchoIntegration:
    Type: AWS::ApiGatewayV2::Integration
    Properties: {{ApiId: !Ref Live, IntegrationType: AWS_PROXY, IntegrationUri: !GetAtt EchoFunction.Arn}}
  PushRoute:
    Type: AWS::ApiGatewayV2::Route
    Properties: {{ApiId: !Ref Live, RouteKey: push, Target: !Sub "integrations/${{PushIntegration}}"}}
  PushIntegration:
    Type: AWS::ApiGatewayV2::Integration
    Properties: {{ApiId: !Ref Live, IntegrationType: AWS_PROXY, IntegrationUri: !GetAtt PushFunction.Arn}}
  FailRoute:
    Type: AWS::ApiGatewayV2::Route
    Properties: {{ApiId: !Ref Live, RouteKey: fail, Target: !Sub "integrations/${{FailIntegration}}"}}
  FailResponse:
    Type: AWS::ApiGatewayV2::RouteResponse
    Properties: {{ApiId: !Ref Live, RouteId: !Ref FailRoute, RouteResponseKey: $default}}
  FailIntegration:
    Type: AWS::ApiGatewayV2::Integration
    Properties: {{ApiId: !Ref Live, IntegrationType: AWS_PROXY, IntegrationUri: !GetAtt FailFunction.Arn}}
  LiveStage:
    Type: AWS::ApiGatewayV2::Stage
    Properties: {{ApiId: !Ref Live, StageName: live}}
  AuthorizeFunction: {{Type: AWS::Serverless::Function, Properties: {{Handler: handlers.authorize}}}}
  OpenFunction: {{Type: AWS::Serverless::Function, Properties: {{Handler: handlers.open_connection}}}}
  CloseFunction: {{Type: AWS::Serverless::Function, Properties: {{Handler: handlers.close_connection}}}}
  EchoFunction: {{Type: AWS::Serverless::Function, Properties: {{Handler: handlers.echo}}}}
  PushFunction: {{Type: AWS::Serverless::Function, Properties: {{Handler: handlers.push}}}}
  FailFunction: {{Type: AWS::Serverless::Function, Properties: {{Handler: handlers.fail}}}}
"""

HANDLERS = '''
import json, os, time

def record(name, event):
    """Keep the event where the test can read it."""
    path = os.path.join(os.environ["EVENTS_DIR"], f"{time.time_ns()}-{name}.json")
    with open(path + ".tmp", "w") as out:
        json.dump(event, out)
    os.replace(path + ".tmp", path)

def authorize(event, context):
    record("authorize", event)
    token = event["queryStringParameters"]["token"]
    if token == "unauthorized":
        raise Exception("Unauthorized")
    if token == "broken":
        raise RuntimeError("the key store is down")
    if token == "malformed":
        return {"allow": True}
    effect = "Allow" if token == "good" else "Deny"
    statement = {"Action": "execute-api:Invoke", "Effect": effect, "Resource": event["methodArn"]}
    return {"principalId": "u-1", "policyDocument": {"Version": "2012-10-17", "Statement": [statement]},
            "context": {"user_id": "u-1", "display_name": "Ada"}}

def open_connection(event, context):
    record("open", event)
    return {"statusCode": 200}

def close_connection(event, context):
    record("close", event)
    return {"statusCode": 200}

def echo(event, context):
    record("echo", event)
    return {"statusCode": 200, "body": "echo " + json.loads(event["body"])["text"]}

def push(event, context):
    """Post to the sender through @connections, as a broadcaster would (its endpoint comes from the template)."""
    import boto3
    client = boto3.client("apigatewaymanagementapi", endpoint_url=os.environ["CONNECTIONS_ENDPOINT"])
    connection_id = event["requestContext"]["connectionId"]
    identity = client.get_connection(ConnectionId=connection_id)["Identity"]
    client.post_to_connection(ConnectionId=connection_id, Data=json.dumps({"pushed_to": identity["SourceIp"]}))
    return {"statusCode": 200, "body": "not sent: the route has no route response"}

def fail(event, context):
    raise KeyError("no such board")
'''


def write_project(root: Path) -> Path:
    (root / "stubs").mkdir(parents=True)
    (root / "events").mkdir()
    (root / "template.yaml").write_text(TEMPLATE.format(events_dir=root / "events"))
    (root / "stubs" / "handlers.py").write_text(textwrap.dedent(HANDLERS))
    return root


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return write_project(tmp_path / "project")


def recorded(project: Path, name: str) -> list[dict[str, Any]]:
    """The events a stub function recorded, oldest first."""
    return [json.loads(path.read_text()) for path in sorted((project / "events").glob(f"*-{name}.json"))]


async def until(condition: Callable[[], Any], seconds: float = 20.0) -> Any:
    for _ in range(int(seconds / 0.05)):
        found = condition()
        if found:
            return found
        await asyncio.sleep(0.05)
    raise AssertionError("the condition never held")


@dataclass
class Live:
    url: str
    connections_url: str
    gateway: WebSocketGateway

    def management_client(self) -> Any:
        return boto3.client(
            "apigatewaymanagementapi",
            endpoint_url=self.connections_url,
            region_name="us-east-1",
            aws_access_key_id="local",
            aws_secret_access_key="local",
            config=Config(retries={"max_attempts": 1}),
        )


@asynccontextmanager
async def serving(project: Path) -> AsyncIterator[Live]:
    """The project's WebSocket API on a free port, its functions in worker processes, as `python -m local` runs it."""
    template = Template(project / "template.yaml")
    identities = template.default_identities()
    api = template.websocket_api(identities)
    assert api is not None
    port = free_port()
    endpoints = Endpoints("http://127.0.0.1:9", "redis://127.0.0.1:9/0", 9, "session-token", identities)
    endpoints.url_rewrites = local_urls(api, "127.0.0.1", port)
    workers = Workers(template, endpoints, lambda function_id, line: print(f"[{function_id}] {line}"))
    gateway = WebSocketGateway(api, workers, say=print)
    runner = await start(gateway, "127.0.0.1", port)
    try:
        yield Live(f"ws://127.0.0.1:{port}/live", f"http://127.0.0.1:{port}/live", gateway)
    finally:
        await runner.cleanup()
        await workers.stop()


def scenario(project: Path, steps: Callable[[Live, aiohttp.ClientSession], Awaitable[Any]]) -> Any:
    async def run() -> Any:
        async with serving(project) as live, aiohttp.ClientSession() as session:
            return await steps(live, session)

    return asyncio.run(run())


async def handshake_status(session: aiohttp.ClientSession, url: str) -> int:
    try:
        socket = await session.ws_connect(url)
    except aiohttp.WSServerHandshakeError as refused:
        return refused.status
    await socket.close()
    return 101


def test_the_authorizer_decides_the_handshake_as_api_gateway_does(project: Path) -> None:
    async def steps(live: Live, session: aiohttp.ClientSession) -> list[int]:
        queries = ["", "?token=", "?token=bad", "?token=unauthorized", "?token=broken", "?token=malformed"]
        return [await handshake_status(session, live.url + query) for query in queries]

    assert scenario(project, steps) == [401, 401, 403, 401, 500, 500]
    # No identity source, no call; the four others reached the authorizer, and nothing got past it.
    assert [event["queryStringParameters"]["token"] for event in recorded(project, "authorize")] == [
        "bad",
        "unauthorized",
        "broken",
        "malformed",
    ]
    assert recorded(project, "open") == []


def test_connect_and_disconnect_events_reach_their_functions(project: Path) -> None:
    async def steps(live: Live, session: aiohttp.ClientSession) -> str:
        socket = await session.ws_connect(f"{live.url}?token=good&lang=fr", headers={"User-Agent": "it-test/1"})
        connection_id = live.gateway.connection_ids[0]
        await socket.close()
        await until(lambda: recorded(project, "close"))
        return connection_id

    connection_id = scenario(project, steps)

    (authorized,) = recorded(project, "authorize")
    (opened,) = recorded(project, "open")
    (closed,) = recorded(project, "close")
    assert authorized["type"] == "REQUEST"
    assert authorized["methodArn"].endswith("/live/$connect")
    assert authorized["requestContext"]["connectionId"] == connection_id
    assert opened["queryStringParameters"] == {"token": "good", "lang": "fr"}
    assert opened["headers"]["User-Agent"] == "it-test/1"
    assert opened["requestContext"]["eventType"] == "CONNECT"
    assert opened["requestContext"]["authorizer"] == {"principalId": "u-1", "user_id": "u-1", "display_name": "Ada"}
    assert opened["requestContext"]["identity"] == {"sourceIp": "127.0.0.1", "userAgent": "it-test/1"}
    context = closed["requestContext"]
    assert (context["eventType"], context["routeKey"], context["connectionId"]) == (
        "DISCONNECT",
        "$disconnect",
        connection_id,
    )
    assert (context["disconnectStatusCode"], context["disconnectReason"]) == (1000, "Connection Closed Normally")
    assert context["authorizer"]["user_id"] == "u-1"  # the $connect authorizer's context stays with the connection


def test_a_route_response_answers_the_sender_and_api_gateway_answers_the_rest(project: Path) -> None:
    async def steps(live: Live, session: aiohttp.ClientSession) -> list[dict[str, Any] | str]:
        socket = await session.ws_connect(f"{live.url}?token=good")
        connection_id = live.gateway.connection_ids[0]
        answers: list[dict[str, Any] | str] = []
        for message in ({"action": "echo", "text": "hello"}, {"action": "nope"}, {"action": "fail"}):
            await socket.send_str(json.dumps(message))
            answer = (await socket.receive(timeout=20)).data
            answers.append(answer if answer.startswith("echo") else json.loads(answer))
        assert all(answer["connectionId"] == connection_id for answer in answers[1:] if isinstance(answer, dict))
        await socket.close()
        return answers

    echo, forbidden, failed = scenario(project, steps)

    assert echo == "echo hello"
    assert isinstance(forbidden, dict)
    assert isinstance(failed, dict)
    assert (forbidden["message"], set(forbidden)) == ("Forbidden", {"message", "connectionId", "requestId"})
    assert failed["message"] == "Internal server error"
    (event,) = recorded(project, "echo")
    assert (event["body"], event["isBase64Encoded"]) == ('{"action": "echo", "text": "hello"}', False)
    assert (event["requestContext"]["eventType"], event["requestContext"]["routeKey"]) == ("MESSAGE", "echo")


def test_boto3_posts_gets_and_deletes_through_connections_and_gets_gone_after(project: Path) -> None:
    async def steps(live: Live, session: aiohttp.ClientSession) -> dict[str, Any]:
        client = live.management_client()
        socket = await session.ws_connect(f"{live.url}?token=good", headers={"User-Agent": "it-test/2"})
        connection_id = live.gateway.connection_ids[0]
        seen: dict[str, Any] = {}
        await asyncio.to_thread(client.post_to_connection, ConnectionId=connection_id, Data=b'{"type":"top10"}')
        text = await socket.receive(timeout=10)
        await asyncio.to_thread(client.post_to_connection, ConnectionId=connection_id, Data=b"\xff\x00")
        binary = await socket.receive(timeout=10)
        seen["frames"] = [(text.type, text.data), (binary.type, binary.data)]
        seen["connection"] = await asyncio.to_thread(client.get_connection, ConnectionId=connection_id)
        big = b"x" * (MAX_MESSAGE_BYTES + 1)
        with pytest.raises(client.exceptions.PayloadTooLargeException):
            await asyncio.to_thread(client.post_to_connection, ConnectionId=connection_id, Data=big)
        await asyncio.to_thread(client.delete_connection, ConnectionId=connection_id)
        closed = await socket.receive(timeout=10)
        seen["closed"] = (closed.type, closed.data)
        seen["gone"] = []
        for call in (client.post_to_connection, client.get_connection, client.delete_connection):
            arguments = {"ConnectionId": connection_id} | (
                {"Data": b"late"} if call == client.post_to_connection else {}
            )
            with pytest.raises(client.exceptions.GoneException) as gone:
                await asyncio.to_thread(call, **arguments)
            seen["gone"].append(gone.value.response["ResponseMetadata"]["HTTPStatusCode"])
        await until(lambda: recorded(project, "close"))
        return seen

    seen = scenario(project, steps)

    assert seen["frames"] == [(aiohttp.WSMsgType.TEXT, '{"type":"top10"}'), (aiohttp.WSMsgType.BINARY, b"\xff\x00")]
    connection = seen["connection"]
    assert connection["Identity"] == {"SourceIp": "127.0.0.1", "UserAgent": "it-test/2"}
    assert isinstance(connection["ConnectedAt"], datetime)
    assert connection["ConnectedAt"] <= connection["LastActiveAt"] <= datetime.now(UTC)
    assert seen["closed"] == (aiohttp.WSMsgType.CLOSE, 1000)
    assert seen["gone"] == [410, 410, 410]
    (closed,) = recorded(project, "close")
    assert closed["requestContext"]["disconnectStatusCode"] == 1000


def test_a_function_reaches_its_connection_through_the_connections_endpoint_the_template_gives_it(
    project: Path,
) -> None:
    async def steps(live: Live, session: aiohttp.ClientSession) -> list[Any]:
        socket = await session.ws_connect(f"{live.url}?token=good")
        await socket.send_str('{"action": "push"}')
        pushed = await socket.receive(timeout=30)
        await socket.send_str('{"action": "echo", "text": "after"}')
        echoed = await socket.receive(timeout=30)  # the push route's own answer was not sent: no route response
        await socket.close()
        return [json.loads(pushed.data), echoed.data]

    assert scenario(project, steps) == [{"pushed_to": "127.0.0.1"}, "echo after"]


def test_the_in_process_stack_serves_the_websocket_api_with_the_handlers_in_this_process(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(project))  # the handlers import as stubs.handlers, from the project's root

    async def steps(ws_url: str) -> Any:
        async with aiohttp.ClientSession() as session, session.ws_connect(f"{ws_url}?token=good") as socket:
            await socket.send_str('{"action": "push"}')
            return json.loads((await socket.receive(timeout=30)).data)

    with in_process_stack(project / "template.yaml", websocket=True) as stack:
        pushed = asyncio.run(steps(stack.ws_url))
        port = stack.ws_url.split(":")[2].split("/")[0]

    assert stack.connections_url == f"http://127.0.0.1:{port}/live"
    assert pushed == {"pushed_to": "127.0.0.1"}  # boto3, under mock_aws, posted to the local @connections
    assert [event["requestContext"]["eventType"] for event in recorded(project, "close")] == ["DISCONNECT"]


def test_python_m_local_serves_the_websocket_api_and_ctrl_c_closes_it_running_disconnect(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = free_port()
    monkeypatch.setenv("LOCAL_WS_PORT", str(port))
    runtime = start_runtime(project, tmp_path / "state")
    try:
        endpoints = runtime.endpoints()

        async def steps() -> tuple[Any, list[Any]]:
            async with aiohttp.ClientSession() as session:
                sockets = [await session.ws_connect(f"{endpoints.ws_url}?token=good") for _ in range(2)]
                await sockets[0].send_str('{"action": "push"}')
                pushed = await sockets[0].receive(timeout=30)
                # Ctrl-C with both connections open.
                await asyncio.to_thread(stop_and_check_nothing_is_left, runtime, signal.SIGINT)
                closes = [await socket.receive(timeout=5) for socket in sockets]
                return json.loads(pushed.data), [(closed.type, closed.data) for closed in closes]

        pushed, closes = asyncio.run(steps())
    finally:
        if runtime.process.poll() is None:
            runtime.process.kill()

    assert (endpoints.ws_url, endpoints.connections_url) == (
        f"ws://127.0.0.1:{port}/live",
        f"http://127.0.0.1:{port}/live",
    )
    assert pushed == {"pushed_to": "127.0.0.1"}  # the worker's CONNECTIONS_ENDPOINT was the local one
    assert closes == [(aiohttp.WSMsgType.CLOSE, 1001)] * 2
    codes = [event["requestContext"]["disconnectStatusCode"] for event in recorded(project, "close")]
    assert codes == [1001, 1001]
    output = runtime.output()
    assert f"WebSocket    {endpoints.ws_url}" in output
    assert "  $connect     -> OpenFunction  (authorizer AuthorizeFunction on route.request.querystring.token" in output
    assert f"@connections {endpoints.connections_url}/@connections/{{connectionId}}" in output
