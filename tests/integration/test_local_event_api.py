"""The local Event API (AppSync Events) over real worker processes, on a small project of its own: an authorizer, a
Powertools onSubscribe handler and a publisher that signs with its own credentials, recording the events they get;
the project's clients are ``clients.event_api`` and plain HTTP. The last tests run the in-process stack and the whole
``python -m local`` (stopped with Ctrl-C).
"""

import asyncio
import json
import signal
import textwrap
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import requests
from botocore.credentials import Credentials

from clients.event_api import (
    PROTOCOL,
    ConnectionRefused,
    EventSocket,
    IamAuth,
    PublishError,
    SubscribeError,
    UnsubscribeError,
    authorization_headers,
    publish_http,
    publish_request,
)
from local.event_api import MAX_EVENT_BYTES, MAX_SUBSCRIPTIONS, EventApi, local_urls
from local.in_process import in_process_stack
from local.plumbing import start
from local.processes import free_port
from local.services import ACCESS_KEY_ID, SECRET_ACCESS_KEY, Endpoints
from local.template import Template
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
Resources:
  Live:
    Type: AWS::AppSync::Api
    Properties:
      Name: live
      EventConfig:
        AuthProviders:
          - AuthType: AWS_LAMBDA
            LambdaAuthorizerConfig:
              AuthorizerUri: !GetAtt AuthorizeFunction.Arn
              AuthorizerResultTtlInSeconds: 300
          - AuthType: AWS_IAM
        ConnectionAuthModes: [{{AuthType: AWS_LAMBDA}}, {{AuthType: AWS_IAM}}]
        DefaultSubscribeAuthModes: [{{AuthType: AWS_LAMBDA}}]
        DefaultPublishAuthModes: [{{AuthType: AWS_IAM}}]
  RoomsNamespace:
    Type: AWS::AppSync::ChannelNamespace
    Properties: {{ApiId: !GetAtt Live.ApiId, Name: rooms}}
  OpenNamespace:
    Type: AWS::AppSync::ChannelNamespace
    Properties: {{ApiId: !GetAtt Live.ApiId, Name: open, PublishAuthModes: [{{AuthType: AWS_LAMBDA}}]}}
  PlayersNamespace:
    Type: AWS::AppSync::ChannelNamespace
    Properties:
      ApiId: !GetAtt Live.ApiId
      Name: players
      HandlerConfigs:
        OnSubscribe:
          Behavior: DIRECT
          Integration: {{DataSourceName: !GetAtt Subscriptions.Name, LambdaConfig: {{InvokeType: REQUEST_RESPONSE}}}}
  Subscriptions:
    Type: AWS::AppSync::DataSource
    Properties:
      ApiId: !GetAtt Live.ApiId
      Name: subscriptions
      Type: AWS_LAMBDA
      LambdaConfig: {{LambdaFunctionArn: !GetAtt OnSubscribeFunction.Arn}}
      ServiceRoleArn: !GetAtt SubscriptionsRole.Arn
  SubscriptionsRole:
    Type: AWS::IAM::Role
    Properties: {{AssumeRolePolicyDocument: {{Version: "2012-10-17", Statement: []}}}}
  AuthorizePermission:
    Type: AWS::Lambda::Permission
    Properties:
      {{Action: lambda:InvokeFunction, FunctionName: !Ref AuthorizeFunction, Principal: appsync.amazonaws.com,
       SourceArn: !GetAtt Live.ApiArn}}
  AuthorizeFunction: {{Type: AWS::Serverless::Function, Properties: {{Handler: handlers.authorize}}}}
  OnSubscribeFunction: {{Type: AWS::Serverless::Function, Properties: {{Handler: handlers.on_subscribe}}}}
  PublishFunction:
    Type: AWS::Serverless::Function
    Properties:
      Handler: handlers.publish
      Environment: {{Variables: {{EVENT_API_URL: !Sub "https://${{Live.Dns.Http}}/event"}}}}
      Events:
        Publish: {{Type: HttpApi, Properties: {{Method: POST, Path: /publish}}}}
"""

HANDLERS = '''
import json, os, time, urllib.request

from aws_lambda_powertools.event_handler import AppSyncEventsResolver
from aws_lambda_powertools.event_handler.events_appsync.exceptions import UnauthorizedException


def record(name, event):
    """Keep the event where the test can read it."""
    path = os.path.join(os.environ["EVENTS_DIR"], f"{time.time_ns()}-{name}.json")
    with open(path + ".tmp", "w") as out:
        json.dump(event, out)
    os.replace(path + ".tmp", path)


def authorize(event, context):
    record("authorize", event)
    token = event["authorizationToken"]
    if token == "broken":
        raise RuntimeError("the key store is down")
    if token == "malformed":
        return {"allow": True}
    if token.startswith("user-"):
        return {"isAuthorized": True, "handlerContext": {"user_id": token[5:]}, "ttlOverride": 60}
    return {"isAuthorized": token == "anonymous", "handlerContext": {}}


app = AppSyncEventsResolver()


@app.on_subscribe("/players/*")
def own_channel_only():
    user_id = app.current_event.raw_event["identity"]["handlerContext"].get("user_id")
    channel = app.current_event.info.channel_segments[1]
    if channel == "closed":
        raise ValueError("that channel is closed")  # Powertools answers {"error": ...}
    if channel != user_id:
        raise UnauthorizedException("a player watches their own channel only")  # Powertools re-raises it


def on_subscribe(event, context):
    record("subscribe", event)
    if event["info"]["channel"]["segments"][-1] == "crash":
        raise KeyError("the handler crashed")
    return app.resolve(event, context)


def publish(event, context):
    """Send {"channel", "message"} to the Event API, signed with the function's own credentials (SigV4)."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    asked = json.loads(event["body"])
    body = json.dumps({"channel": asked["channel"], "events": [json.dumps(asked["message"])]}).encode()
    url = os.environ["EVENT_API_URL"]
    signed = AWSRequest(method="POST", url=url, data=body, headers={"content-type": "application/json"})
    keys = [os.environ[name] for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")]
    SigV4Auth(Credentials(*keys), "appsync", os.environ["AWS_DEFAULT_REGION"]).add_auth(signed)
    request = urllib.request.Request(url, data=body, headers=dict(signed.headers.items()), method="POST")
    with urllib.request.urlopen(request) as response:
        return {"statusCode": 200, "body": response.read().decode()}
'''

SIGNER = IamAuth(Credentials(ACCESS_KEY_ID, SECRET_ACCESS_KEY, "any-session-token"))


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


@dataclass
class Live:
    """The project's Event API on a free port, as a client sees it."""

    api: EventApi
    workers: Workers
    realtime_url: str
    http_url: str
    http_host: str
    sockets: list[EventSocket] = field(default_factory=list)

    async def connect(self, authorization: Any = "anonymous", **options: Any) -> EventSocket:
        """A client connected with ``authorization`` (closed when the scenario ends)."""
        socket = await EventSocket.connect(self.realtime_url, self.http_host, authorization, **options)
        self.sockets.append(socket)
        return socket


@asynccontextmanager
async def serving(project: Path, **options: Any) -> AsyncIterator[Live]:
    """The project's Event API on a free port, its functions in worker processes, as `python -m local` runs them."""
    template = Template(project / "template.yaml")
    identities = template.default_identities()
    spec = template.event_api(identities)
    assert spec is not None
    port = free_port()
    endpoints = Endpoints("http://127.0.0.1:9", "redis://127.0.0.1:9/0", 9, "session-token", identities)
    endpoints.url_rewrites = local_urls(spec, "127.0.0.1", port)
    workers = Workers(template, endpoints, lambda function_id, line: print(f"[{function_id}] {line}"))
    api = EventApi(spec, workers, say=print, **options)
    runner = await start(api.app(), "127.0.0.1", port)
    host = f"127.0.0.1:{port}"
    live = Live(api, workers, f"ws://{host}/event/realtime", f"http://{host}/event", host)
    try:
        yield live
    finally:
        await asyncio.gather(*(socket.close() for socket in live.sockets))
        await runner.cleanup()
        await workers.stop()


def scenario(project: Path, steps: Callable[[Live], Awaitable[Any]], **options: Any) -> Any:
    async def run() -> Any:
        async with serving(project, **options) as live:
            return await steps(live)

    return asyncio.run(run())


async def refusal(attempt: Awaitable[Any]) -> tuple[str | None, str]:
    """The errorType and message an attempt was refused with."""
    try:
        await attempt
    except (SubscribeError, PublishError, UnsubscribeError, ConnectionRefused) as refused:
        return refused.error_type, refused.errors[0]["message"] if refused.errors else ""
    raise AssertionError("the attempt was not refused")


# --- Connecting ---


def test_a_viewer_connects_with_its_token_and_a_refused_one_gets_connection_error_then_a_close(project: Path) -> None:
    async def steps(live: Live) -> dict[str, Any]:
        seen: dict[str, Any] = {}
        viewer = await live.connect("anonymous", keep_raw=True)
        seen["ack"] = await viewer.next_raw()
        await viewer.close()
        seen["refused"], seen["codes"] = [], []
        for token in ("bad", "broken", "malformed"):
            socket = await live.connect(token, init=False, keep_raw=True)
            seen["refused"].append(await socket.next_raw())
            await asyncio.sleep(0.2)
            seen["codes"].append((socket.closed, socket.close_code))
            await socket.close()
        seen["wrong host"] = await refusal(EventSocket.connect(live.realtime_url, "elsewhere.example.com", "anonymous"))
        seen["signed"] = (await live.connect(SIGNER)).connection_timeout_ms
        seen["badly signed"] = await refusal(live.connect(IamAuth(Credentials(ACCESS_KEY_ID, "not-the-secret"))))
        return seen

    seen = scenario(project, steps)

    assert seen["ack"] == {
        "type": "connection_ack",
        "connectionTimeoutMs": 300000,
        "payload": {"connectionTimeoutMs": 300000},
    }
    refused = {"errorType": "UnauthorizedException", "message": "the authorizer refused the request"}
    assert seen["refused"] == [{"type": "connection_error", "errors": [refused]}] * 3
    assert seen["codes"] == [(True, 1008)] * 3
    assert seen["wrong host"][0] == "UnauthorizedException"
    assert seen["signed"] == 300000  # ConnectionAuthModes has AWS_IAM too: a SigV4-signed connect over "{}"
    assert seen["badly signed"][0] == "UnauthorizedException"
    events = recorded(project, "authorize")
    assert [event["authorizationToken"] for event in events] == ["anonymous", "bad", "broken", "malformed"]
    context = events[0]["requestContext"]
    assert (context["operation"], context["channelNamespaceName"], context["channel"]) == ("EVENT_CONNECT", None, None)
    assert context["accountId"] == "123456789012"
    assert len(context["apiId"]) == 26
    assert events[0]["requestHeaders"]["sec-websocket-protocol"].startswith(PROTOCOL)


def test_the_auth_may_come_as_plain_upgrade_headers_but_the_subprotocol_is_required(project: Path) -> None:
    async def steps(live: Live) -> list[Any]:
        async with aiohttp.ClientSession() as session:
            plain = await session.ws_connect(
                live.realtime_url, protocols=[PROTOCOL], headers={"Authorization": "user-ada"}
            )
            await plain.send_str('{"type":"connection_init"}')
            acked = json.loads((await plain.receive(timeout=20)).data)["type"]
            await plain.close()
            statuses = []
            for protocols in ([], ["graphql-ws"], [PROTOCOL, "header-%%%"]):
                try:
                    await session.ws_connect(live.realtime_url, protocols=protocols)
                except aiohttp.WSServerHandshakeError as refused:
                    statuses.append(refused.status)
            return [acked, statuses]

    assert scenario(project, steps) == ["connection_ack", [400, 400, 400]]


# --- Subscribing ---


def test_a_subscription_is_authorized_then_put_to_the_namespaces_on_subscribe_handler(project: Path) -> None:
    async def steps(live: Live) -> dict[str, Any]:
        player = await live.connect("user-ada")
        return {
            "own": await player.subscribe("/players/ada", subscription_id="own"),
            "other": await refusal(player.subscribe("/players/bob")),
            "closed": await refusal(player.subscribe("/players/closed")),
            "crash": await refusal(player.subscribe("/players/crash")),
            "refused token": await refusal(player.subscribe("/rooms/red", authorization="bad")),
            "iam mode": await refusal(player.subscribe("/rooms/red", authorization=SIGNER)),
            "no handler": await player.subscribe("/rooms/red", subscription_id="red"),
        }

    seen = scenario(project, steps)

    assert (seen["own"], seen["no handler"]) == ("own", "red")
    assert seen["other"] == ("UnauthorizedException", "a player watches their own channel only")
    assert seen["closed"] == ("UnauthorizedException", "ValueError - that channel is closed")
    assert seen["crash"] == ("HandlerExecutionError", "the onSubscribe handler failed")
    assert seen["refused token"] == ("UnauthorizedException", "the authorizer refused the request")
    assert seen["iam mode"][0] == "UnauthorizedException"
    # One call per token: the connect's answer served every subscribe of the same token (ttlOverride 60 s).
    tokens = [event["authorizationToken"] for event in recorded(project, "authorize")]
    assert tokens == ["user-ada", "bad"]
    subscribed = recorded(project, "subscribe")
    assert [event["info"]["channel"]["path"] for event in subscribed] == [
        "/players/ada",
        "/players/bob",
        "/players/closed",
        "/players/crash",
    ]
    event = subscribed[0]
    assert event["identity"] == {"handlerContext": {"user_id": "ada"}}
    assert event["info"] == {
        "channel": {"path": "/players/ada", "segments": ["players", "ada"]},
        "channelNamespace": {"name": "players"},
        "operation": "SUBSCRIBE",
    }
    assert (event["result"], event["error"], event["prev"], event["stash"], event["outErrors"], event["events"]) == (
        None,
        None,
        None,
        {},
        [],
        None,
    )
    assert event["request"]["domainName"] is None
    assert event["request"]["headers"]["x-forwarded-for"] == "127.0.0.1"


# --- Publishing and delivery ---


def test_a_publish_reaches_every_subscriber_of_its_channel_and_matching_wildcards_and_no_one_else(
    project: Path,
) -> None:
    async def steps(live: Live) -> dict[str, Any]:
        sockets = [await live.connect(keep_raw=True) for _ in range(4)]
        red_1, red_2, blue, watcher = sockets
        subscriptions = {
            "red 1": (red_1, await red_1.subscribe("/rooms/red")),
            "red 2": (red_2, await red_2.subscribe("/rooms/red/")),  # slashes at either end are the same channel
            "blue": (blue, await blue.subscribe("/rooms/blue")),
            "rooms/*": (watcher, await watcher.subscribe("/rooms/*")),
            "rooms/red/*": (watcher, await watcher.subscribe("rooms/red/*")),
        }
        answer = await publish_http(live.http_url, "/rooms/red", [{"n": 1}, "two"], SIGNER)
        await publish_http(live.http_url, "/rooms/red/table-1", [{"n": 3}], SIGNER)
        await asyncio.sleep(0.3)
        received = {}
        for name, (socket, subscription) in subscriptions.items():
            received[name] = [await socket.next_event(subscription) for _ in range(socket.pending_events(subscription))]
        assert red_1.raw is not None
        raw = [red_1.raw.get_nowait() for _ in range(red_1.raw.qsize())]
        for socket in sockets:
            await socket.close()
        return {"answer": answer, "received": received, "raw": raw, "subscription": subscriptions["red 1"][1]}

    seen = scenario(project, steps)

    assert seen["received"] == {
        "red 1": [{"n": 1}, "two"],
        "red 2": [{"n": 1}, "two"],
        "blue": [],
        "rooms/*": [{"n": 1}, "two", {"n": 3}],
        "rooms/red/*": [{"n": 3}],
    }
    assert [item["index"] for item in seen["answer"]["successful"]] == [0, 1]
    assert seen["answer"]["failed"] == []
    # One data frame per event, the event as one JSON string.
    data = [message for message in seen["raw"] if message["type"] == "data"]
    assert data == [
        {"type": "data", "id": seen["subscription"], "event": '{"n": 1}'},
        {"type": "data", "id": seen["subscription"], "event": '"two"'},
    ]


def test_an_unsubscribed_channel_delivers_nothing_more_and_an_unknown_id_is_an_unsubscribe_error(project: Path) -> None:
    async def steps(live: Live) -> list[Any]:
        viewer = await live.connect()
        subscription = await viewer.subscribe("/rooms/red")
        await viewer.unsubscribe(subscription)
        await publish_http(live.http_url, "/rooms/red", [1], SIGNER)
        unknown = await refusal(viewer.unsubscribe("nope"))
        await asyncio.sleep(0.2)
        return [viewer.pending_events(subscription), unknown, live.api.usage.deliveries]

    assert scenario(project, steps) == [0, ("UnknownOperationError", "Unknown operation id nope"), 0]


def test_a_function_publishes_through_event_api_url_signed_with_its_own_credentials(project: Path) -> None:
    async def steps(live: Live) -> list[Any]:
        viewer = await live.connect()
        subscription = await viewer.subscribe("/rooms/red")
        body = json.dumps({"channel": "/rooms/red", "message": {"top": [1, 2, 3]}})
        invocation = await live.workers.invoke("PublishFunction", {"body": body})
        return [invocation.error, await viewer.next_event(subscription)]

    error, event = scenario(project, steps)

    assert error is None
    assert event == {"top": [1, 2, 3]}


def test_http_publish_needs_a_valid_signature_when_the_namespace_publishes_with_iam(project: Path) -> None:
    async def steps(live: Live) -> dict[str, Any]:
        async def attempt(authorization: Any = None, tamper: bool = False, garbage: bool = False) -> tuple[int, Any]:
            headers, body = publish_request(live.http_url, "/rooms/red", [{"n": 1}], authorization)
            if tamper:
                body = body.replace(b"1", b"2")
            if garbage:
                body = b"not json"
            async with aiohttp.ClientSession() as http, http.post(live.http_url, data=body, headers=headers) as answer:
                return answer.status, await answer.json()

        wrong_key = IamAuth(Credentials(ACCESS_KEY_ID, "not-the-secret"))
        return {
            "signed": await attempt(SIGNER),
            "unsigned": await attempt(),
            "token": await attempt("user-ada"),
            "wrong key": await attempt(wrong_key),
            "tampered": await attempt(SIGNER, tamper=True),
            "not json": await attempt(SIGNER, garbage=True),
        }

    seen = scenario(project, steps)

    assert seen["signed"][0] == 200
    assert len(seen["signed"][1]["successful"][0]["identifier"]) == 36
    for name in ("unsigned", "token", "wrong key", "tampered"):
        status, body = seen[name]
        assert (status, body["errors"][0]["errorType"]) == (401, "UnauthorizedException"), name
    assert seen["wrong key"][1]["errors"][0]["message"].startswith("The request signature we calculated")
    assert (seen["not json"][0], seen["not json"][1]["errors"][0]["errorType"]) == (400, "BadRequestException")
    assert recorded(project, "authorize") == []  # an AWS_LAMBDA value never reaches the authorizer for an IAM mode


def test_clients_cannot_publish_over_the_websocket_where_publish_is_iam_only_but_may_where_it_is_lambda(
    project: Path,
) -> None:
    async def steps(live: Live) -> dict[str, Any]:
        player = await live.connect("user-ada")
        subscription = await player.subscribe("/open/lobby")
        return {
            "token on iam": await refusal(player.publish("/rooms/red", [1])),
            "anonymous on iam": await refusal(player.publish("/rooms/red", [1], authorization="anonymous")),
            "signed on iam": (await player.publish("/rooms/red", [1], authorization=SIGNER))["type"],
            "token on lambda": (await player.publish("/open/lobby", ["hi"]))["successful"][0]["index"],
            "received": await player.next_event(subscription),
            "http token on lambda": (await publish_http(live.http_url, "/open/lobby", ["yo"], "user-ada"))["failed"],
            "http bad token": await refusal(publish_http(live.http_url, "/open/lobby", ["yo"], "bad")),
        }

    seen = scenario(project, steps)

    assert seen["token on iam"][0] == seen["anonymous on iam"][0] == "UnauthorizedException"
    assert seen["signed on iam"] == "publish_success"
    assert (seen["token on lambda"], seen["received"], seen["http token on lambda"]) == (0, "hi", [])
    assert seen["http bad token"][0] == "UnauthorizedException"
    publishes = [
        event for event in recorded(project, "authorize") if event["requestContext"]["operation"] == "EVENT_PUBLISH"
    ]
    assert [event["requestContext"]["channel"] for event in publishes] == ["/open/lobby"]  # "user-ada" was cached


def test_one_publish_reaches_two_thousand_subscribers_of_a_channel_well_under_a_second(project: Path) -> None:
    subscribers = 2000

    async def steps(live: Live) -> tuple[float, list[Any]]:
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as session:

            async def subscribed() -> tuple[EventSocket, str]:
                socket = await live.connect(session=session)
                return socket, await socket.subscribe("/rooms/crowd")

            crowd = [await subscribed()]  # the authorizer's answer is cached from here on
            while len(crowd) < subscribers:
                crowd += await asyncio.gather(*(subscribed() for _ in range(min(250, subscribers - len(crowd)))))
            waiting = [asyncio.ensure_future(socket.next_event(subscription)) for socket, subscription in crowd]
            await asyncio.sleep(0.2)
            started = asyncio.get_running_loop().time()
            await publish_http(live.http_url, "/rooms/crowd", [{"top": list(range(10))}], SIGNER, session=session)
            received = await asyncio.gather(*waiting)
            elapsed = asyncio.get_running_loop().time() - started
            await asyncio.gather(*(socket.close() for socket, _ in crowd))
            return elapsed, received

    elapsed, received = scenario(project, steps)

    assert received == [{"top": list(range(10))}] * subscribers
    # The emulator, the publisher and every subscriber share this process's one core here.
    assert elapsed < 1.0


# --- Limits and protocol errors ---


def test_appsync_quotas_ids_and_channels_are_enforced(project: Path) -> None:
    async def steps(live: Live) -> dict[str, Any]:
        socket = await live.connect("user-ada", keep_raw=True)
        seen: dict[str, Any] = {
            "6 events": await refusal(socket.publish("/rooms/red", list(range(6)), SIGNER)),
            "oversize": await refusal(socket.publish("/rooms/red", ["x" * MAX_EVENT_BYTES], SIGNER)),
            "wildcard publish": await refusal(socket.publish("/rooms/*", [1], SIGNER)),
            "unknown namespace": await refusal(socket.subscribe("/nowhere/x")),
            "bad channels": [
                (await refusal(socket.subscribe(channel)))[0]
                for channel in ("/", "//", "/rooms//red", "/-rooms", "/a/b/c/d/e/f", "/rooms/x*", "/*", "/rooms/*/x")
            ],
            "bad ids": [
                (await refusal(socket.subscribe("/rooms/red", subscription_id=key)))[0]
                for key in ("", "has space", "a" * 129, "é")
            ],
        }
        await socket.subscribe("/rooms/red", subscription_id="same")
        seen["duplicate"] = await refusal(socket.subscribe("/rooms/blue", subscription_id="same"))
        for index in range(MAX_SUBSCRIPTIONS - 1):
            await socket.subscribe(f"/rooms/r{index}")
        seen["201st"] = await refusal(socket.subscribe("/rooms/one-more"))
        signed = authorization_headers(SIGNER, live.http_host, {"channel": "/rooms/red", "events": ["not json"]})
        await socket.send_raw(
            {"type": "publish", "id": "p1", "channel": "/rooms/red", "events": ["not json"], "authorization": signed}
        )
        await socket.send_raw({"type": "hello", "id": "h1"})
        await socket.send_raw("{not json")
        replies = []
        while len(replies) < 3:
            message = await socket.next_raw()
            if message["type"] == "error" or message.get("id") == "p1":
                replies.append(message)
        seen["replies"] = replies
        return seen

    seen = scenario(project, steps)

    for name in ("6 events", "oversize", "wildcard publish", "unknown namespace", "duplicate"):
        assert seen[name][0] == "BadRequestException", name
    assert seen["bad channels"] == ["BadRequestException"] * 8
    assert seen["bad ids"] == ["BadRequestException"] * 4
    assert seen["201st"][0] == "MaxSubscriptionsReachedError"
    not_json, hello, garbage = seen["replies"]
    assert (not_json["id"], not_json["errors"][0]["errorType"]) == ("p1", "BadRequestException")
    assert (hello["id"], hello["errors"][0]["errorType"]) == ("h1", "UnsupportedOperation")
    assert ("id" in garbage, garbage["errors"][0]["errorType"]) == (False, "UnsupportedOperation")


def test_keep_alives_come_every_period_and_a_connection_ends_after_its_maximum_time(project: Path) -> None:
    async def steps(live: Live) -> list[Any]:
        viewer = await live.connect()
        await asyncio.sleep(0.75)
        keep_alives, stale = viewer.keep_alives, viewer.stale
        await asyncio.sleep(1.0)
        return [keep_alives, stale, viewer.closed, viewer.close_code]

    keep_alives, stale, closed, code = scenario(project, steps, keep_alive_seconds=0.2, max_connection_seconds=1.2)

    assert 2 <= keep_alives <= 4
    assert stale is False
    assert (closed, code) == (True, 1001)


def test_the_usage_endpoint_meters_what_appsync_bills(project: Path) -> None:
    async def steps(live: Live) -> dict[str, Any]:
        viewers = [await live.connect() for _ in range(3)]
        for viewer in viewers:
            await viewer.subscribe("/rooms/red")
        await refusal(viewers[0].subscribe("/players/bob"))
        await refusal(live.connect("bad"))
        await publish_http(live.http_url, "/rooms/red", [1, 2], SIGNER)
        await refusal(publish_http(live.http_url, "/rooms/red", [1]))
        await viewers[0].close()
        await asyncio.sleep(0.1)
        async with aiohttp.ClientSession() as http, http.get(live.http_url.replace("/event", "/_local/usage")) as got:
            return dict(await got.json())

    usage = scenario(project, steps)

    assert {name: usage[name] for name in usage if name != "connection_minutes"} == {
        "connects": 3,
        "subscribes": 3,
        "unsubscribes": 0,
        "publishes": 1,
        "events_published": 2,
        "deliveries": 6,
        "handler_invocations": 1,
        "authorizer_calls": 2,
        "refused_connects": 1,
        "refused_subscribes": 1,
        "refused_publishes": 1,
        "operations": 3 + 3 + 2 + 6,
        "open_connections": 2,
        "subscriptions": 2,
    }
    assert 0 < usage["connection_minutes"] < 1


# --- The in-process stack and python -m local ---


def test_the_in_process_stack_serves_the_event_api_with_the_handlers_in_this_process(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(project))  # the handlers import as stubs.handlers, from the project's root

    with in_process_stack(project / "template.yaml", event_api=True) as stack:
        from stubs import handlers  # type: ignore[import-not-found]

        async def steps() -> Any:
            host = stack.live_http_url.split("/")[2]
            async with await EventSocket.connect(stack.live_url, host, "user-ada") as player:
                subscription = await player.subscribe("/players/ada")
                body = json.dumps({"channel": "/players/ada", "message": "in-process"})
                await asyncio.to_thread(handlers.publish, {"body": body}, None)
                return await player.next_event(subscription)

        received = asyncio.run(steps())
        event_api_url = handlers.os.environ["EVENT_API_URL"]

    assert received == "in-process"
    assert event_api_url == stack.live_http_url
    assert stack.live_url.endswith("/event/realtime")


def test_python_m_local_serves_the_event_api_and_ctrl_c_closes_its_connections(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = free_port()
    monkeypatch.setenv("LOCAL_EVENT_API_PORT", str(port))
    runtime = start_runtime(project, tmp_path / "state")
    try:
        endpoints = runtime.endpoints()

        async def steps() -> tuple[Any, int | None]:
            async with await EventSocket.connect(endpoints.live_url, f"127.0.0.1:{port}", "user-ada") as player:
                subscription = await player.subscribe("/players/ada")
                body = {"channel": "/players/ada", "message": {"rank": 1}}
                status = await asyncio.to_thread(lambda: requests.post(f"{runtime.url}/publish", json=body, timeout=30))
                assert status.status_code == 200, runtime.output()
                event = await player.next_event(subscription)
                await asyncio.to_thread(stop_and_check_nothing_is_left, runtime, signal.SIGINT)
                await asyncio.sleep(0.2)
                return event, player.close_code

        event, close_code = asyncio.run(steps())
    finally:
        if runtime.process.poll() is None:
            runtime.process.kill()

    assert (endpoints.live_url, endpoints.live_http_url) == (
        f"ws://127.0.0.1:{port}/event/realtime",
        f"http://127.0.0.1:{port}/event",
    )
    assert event == {"rank": 1}  # HTTP API -> worker -> SigV4 publish to its rewritten EVENT_API_URL -> the player
    assert close_code == 1001
    output = runtime.output()
    assert f"Event API    {endpoints.live_url}  (Live; connect AWS_LAMBDA, AWS_IAM)" in output
    assert (
        "  /players  publish AWS_IAM, subscribe AWS_LAMBDA, onSubscribe -> OnSubscribeFunction (REQUEST_RESPONSE)"
        in output
    )
    assert "  AWS_LAMBDA -> AuthorizeFunction  (cached 300 s unless ttlOverride)" in output
    assert "EVENT publish /players/ada (HTTP): 1 event -> 1 deliveries" in output
