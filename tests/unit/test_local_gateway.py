"""The local HTTP API answers as API Gateway (HTTP API, payload 2.0, Lambda authorizer, IAM authorization) would;
functions are fakes."""

import asyncio
import base64
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import requests
from aiohttp.test_utils import TestClient, TestServer
from botocore.credentials import Credentials
from multidict import CIMultiDict, CIMultiDictProxy

from clients.signed_api import ExecuteApiAuth
from local.gateway import MAX_PAYLOAD_BYTES, Gateway
from local.plumbing import SIGNATURE_MISMATCH, AuthorizerCache
from local.services import ACCESS_KEY_ID, SECRET_ACCESS_KEY
from local.specs import AWS_IAM, HttpRoute, LambdaAuthorizer
from local.workers import Invocation
from tests.unit.fake_functions import Behaviour, FakeFunctions


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def authorizer(ttl_seconds: int = 240, simple_responses: bool = True) -> LambdaAuthorizer:
    return LambdaAuthorizer(
        name="TokenAuthorizer",
        function_id="Authorize",
        payload_format="2.0",
        simple_responses=simple_responses,
        identity_headers=("Authorization",),
        identity_query_strings=(),
        ttl_seconds=ttl_seconds,
    )


def allow_token_good(event: dict[str, Any]) -> dict[str, Any]:
    allowed = event["identitySource"] == ["Bearer good"]
    return {"isAuthorized": allowed, "context": {"user_id": "u-1"} if allowed else {}}


def ok(event: dict[str, Any]) -> dict[str, Any]:
    return {"statusCode": 200, "body": "ok"}


ROUTES = [
    HttpRoute("POST", "/v1/users", "Register", None),
    HttpRoute("GET", "/v1/scores/{user_id}", "Standing", None),
    HttpRoute("GET", "/v1/scores/top", "Top", None),
    HttpRoute("POST", "/v1/logout", "Logout", "TokenAuthorizer"),
    HttpRoute("POST", "/v1/actions", "StartAction", "TokenAuthorizer"),
    HttpRoute("POST", "/v1/server/scores", "ServerScores", AWS_IAM),
    HttpRoute("GET", "/v1/moderation/players/{user_id}", "Moderation", AWS_IAM),
]
# What the local runtime's functions hold, and so what signs requests to IAM routes locally (any session token).
LOCAL_CREDENTIALS = Credentials(ACCESS_KEY_ID, SECRET_ACCESS_KEY, "any-session-token")


def gateway_with(
    functions: FakeFunctions,
    *,
    routes: list[HttpRoute] = ROUTES,
    token_authorizer: LambdaAuthorizer | None = None,
    clock: FakeClock | None = None,
    web_dir: Path | None = None,
) -> Gateway:
    return Gateway(
        routes,
        {"TokenAuthorizer": token_authorizer or authorizer()},
        functions,
        web_dir=web_dir,
        say=lambda _: None,
        cache=AuthorizerCache(clock or FakeClock()),
    )


class Reply:
    def __init__(self, status: int, headers: CIMultiDictProxy[str], body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body

    def json(self) -> Any:
        return json.loads(self.body)


def request(gateway: Gateway, method: str, path: str, **options: Any) -> Reply:
    async def send() -> Reply:
        async with TestClient(TestServer(gateway.app())) as client:
            response = await client.request(method, path, **options)
            return Reply(response.status, response.headers, await response.read())

    return asyncio.run(send())


# --- Routing and API Gateway's own answers ---


def test_an_unknown_path_or_method_is_404_not_found_in_json() -> None:
    gateway = gateway_with(FakeFunctions(Register=ok))

    for method, path in [("GET", "/nope"), ("GET", "/v1/users"), ("POST", "/v1/users/")]:
        reply = request(gateway, method, path)
        assert (reply.status, reply.json()) == (404, {"message": "Not Found"}), (method, path)
        assert reply.headers["Content-Type"].startswith("application/json")


def test_a_literal_route_wins_over_a_path_parameter() -> None:
    functions = FakeFunctions(Top=ok, Standing=ok)
    gateway = gateway_with(functions)

    request(gateway, "GET", "/v1/scores/top")
    request(gateway, "GET", "/v1/scores/u-42")

    assert [called for called, _ in functions.calls] == ["Top", "Standing"]
    assert functions.events_of("Standing")[0]["pathParameters"] == {"user_id": "u-42"}


def test_a_body_over_10_mb_is_413_and_reaches_no_function() -> None:
    functions = FakeFunctions(Register=ok)

    reply = request(gateway_with(functions), "POST", "/v1/users", data=b"x" * (MAX_PAYLOAD_BYTES + 1))

    assert (reply.status, reply.json()) == (413, {"message": "Request Entity Too Large"})
    assert functions.calls == []


def test_a_function_slower_than_the_integration_timeout_is_503() -> None:
    async def slow(event: dict[str, Any]) -> dict[str, Any]:
        await asyncio.sleep(2)
        return {"statusCode": 200}

    routes = [HttpRoute("POST", "/v1/users", "Register", None, timeout_ms=100)]

    reply = request(gateway_with(FakeFunctions(Register=slow), routes=routes), "POST", "/v1/users")

    assert (reply.status, reply.json()) == (503, {"message": "Service Unavailable"})


def test_a_fault_of_the_runtime_itself_is_500_in_json_not_a_stack_trace() -> None:
    class BrokenInvoker:
        async def invoke(self, function_id: str, event: Any) -> Invocation:
            raise RuntimeError("the worker could not start")

    gateway = Gateway(ROUTES, {"TokenAuthorizer": authorizer()}, BrokenInvoker(), say=lambda _: None)

    reply = request(gateway, "POST", "/v1/users")

    assert (reply.status, reply.json()) == (500, {"message": "Internal Server Error"})


# --- The payload format 2.0 event ---


def test_the_event_is_payload_format_2_0() -> None:
    functions = FakeFunctions(Standing=ok)

    request(
        gateway_with(functions),
        "GET",
        "/v1/scores/u-7?b=2&a=1&a=3",
        headers=CIMultiDict(
            [("X-Custom", "one"), ("X-Custom", "two"), ("Cookie", "a=1; b=2"), ("User-Agent", "tests/1")]
        ),
    )

    event = functions.events_of("Standing")[0]
    assert event["version"] == "2.0"
    assert event["routeKey"] == "GET /v1/scores/{user_id}"
    assert (event["rawPath"], event["rawQueryString"]) == ("/v1/scores/u-7", "b=2&a=1&a=3")
    assert event["queryStringParameters"] == {"b": "2", "a": "1,3"}
    assert event["pathParameters"] == {"user_id": "u-7"}
    assert event["headers"]["x-custom"] == "one,two"
    assert event["cookies"] == ["a=1", "b=2"]
    assert "cookie" not in event["headers"]
    assert event["isBase64Encoded"] is False
    assert "body" not in event
    context = event["requestContext"]
    assert (context["stage"], context["routeKey"], context["accountId"]) == (
        "$default",
        "GET /v1/scores/{user_id}",
        "123456789012",
    )
    assert context["http"] == {
        "method": "GET",
        "path": "/v1/scores/u-7",
        "protocol": "HTTP/1.1",
        "sourceIp": "127.0.0.1",
        "userAgent": "tests/1",
    }
    assert context["requestId"]
    assert context["timeEpoch"] > 0
    assert context["time"].endswith("+0000")
    assert "authorizer" not in context


def test_a_text_body_arrives_as_text_and_a_binary_one_in_base64() -> None:
    functions = FakeFunctions(Register=ok)
    gateway = gateway_with(functions)

    request(gateway, "POST", "/v1/users", json={"username": "ann"})
    request(gateway, "POST", "/v1/users", data=b"\x00\xff", headers={"Content-Type": "application/octet-stream"})

    text, binary = functions.events_of("Register")
    assert (json.loads(text["body"]), text["isBase64Encoded"]) == ({"username": "ann"}, False)
    assert (base64.b64decode(binary["body"]), binary["isBase64Encoded"]) == (b"\x00\xff", True)


# --- From the function's result to the HTTP response ---


def test_a_result_without_status_code_is_200_json_of_the_result() -> None:
    gateway = gateway_with(FakeFunctions(Register=lambda _: {"hello": "world"}, Top=lambda _: "plain"))

    as_json = request(gateway, "POST", "/v1/users")
    as_string = request(gateway, "GET", "/v1/scores/top")

    assert (as_json.status, as_json.json()) == (200, {"hello": "world"})
    assert as_json.headers["Content-Type"].startswith("application/json")
    assert (as_string.status, as_string.body) == (200, b"plain")


def test_a_full_response_keeps_status_headers_cookies_and_decodes_base64() -> None:
    result = {
        "statusCode": 201,
        "headers": {"Content-Type": "image/png", "X-Count": 3},
        "cookies": ["a=1; Path=/", "b=2"],
        "body": base64.b64encode(b"\x89PNG").decode(),
        "isBase64Encoded": True,
    }

    reply = request(gateway_with(FakeFunctions(Register=lambda _: result)), "POST", "/v1/users")

    assert (reply.status, reply.body) == (201, b"\x89PNG")
    assert (reply.headers["Content-Type"], reply.headers["X-Count"]) == ("image/png", "3")
    assert reply.headers.getall("Set-Cookie") == ["a=1; Path=/", "b=2"]


@pytest.mark.parametrize(
    "behaviour",
    [
        pytest.param(lambda _: {"statusCode": "two hundred"}, id="bad-status"),
        pytest.param(lambda _: {"statusCode": 200, "body": {"not": "a string"}}, id="body-not-a-string"),
        pytest.param(lambda _: {"statusCode": 200, "headers": {"x": ["a", "b"]}}, id="multi-value-header"),
        pytest.param(lambda _: 1 / 0, id="handler-raises"),
    ],
)
def test_a_failing_or_malformed_function_is_500_internal_server_error(behaviour: Behaviour) -> None:
    reply = request(gateway_with(FakeFunctions(Register=behaviour)), "POST", "/v1/users")

    assert (reply.status, reply.json()) == (500, {"message": "Internal Server Error"})


# --- The Lambda authorizer ---


def test_without_the_identity_header_it_is_401_and_the_authorizer_is_not_called() -> None:
    functions = FakeFunctions(Authorize=allow_token_good, Logout=ok)

    reply = request(gateway_with(functions), "POST", "/v1/logout")

    assert (reply.status, reply.json()) == (401, {"message": "Unauthorized"})
    assert functions.calls == []


def test_a_denied_request_is_403_and_the_route_is_not_called() -> None:
    functions = FakeFunctions(Authorize=allow_token_good, Logout=ok)

    reply = request(gateway_with(functions), "POST", "/v1/logout", headers={"Authorization": "Bearer garbage"})

    assert (reply.status, reply.json()) == (403, {"message": "Forbidden"})
    assert functions.events_of("Logout") == []


def test_an_allowed_request_carries_the_authorizer_context_to_the_route() -> None:
    functions = FakeFunctions(Authorize=allow_token_good, Logout=ok)

    reply = request(gateway_with(functions), "POST", "/v1/logout", headers={"Authorization": "Bearer good"})

    assert reply.status == 200
    assert functions.events_of("Logout")[0]["requestContext"]["authorizer"] == {"lambda": {"user_id": "u-1"}}


def test_the_authorizer_receives_a_2_0_request_event() -> None:
    functions = FakeFunctions(Authorize=allow_token_good, Logout=ok)

    request(gateway_with(functions), "POST", "/v1/logout?x=1", headers={"Authorization": "Bearer good"}, data="{}")

    event = functions.events_of("Authorize")[0]
    assert (event["version"], event["type"]) == ("2.0", "REQUEST")
    assert event["identitySource"] == ["Bearer good"]
    assert event["routeArn"] == "arn:aws:execute-api:us-east-1:123456789012:localapi/$default/POST/v1/logout"
    assert (event["routeKey"], event["rawPath"], event["rawQueryString"]) == ("POST /v1/logout", "/v1/logout", "x=1")
    assert event["headers"]["authorization"] == "Bearer good"
    assert event["requestContext"]["http"]["method"] == "POST"
    assert "body" not in event


@pytest.mark.parametrize(
    "behaviour",
    [
        pytest.param(lambda _: 1 / 0, id="authorizer-raises"),
        pytest.param(lambda _: {"isAuthorized": "yes"}, id="not-a-boolean"),
        pytest.param(lambda _: ["isAuthorized"], id="not-an-object"),
        pytest.param(lambda _: {"isAuthorized": True, "context": "user"}, id="context-not-an-object"),
    ],
)
def test_a_failing_or_malformed_authorizer_is_500(behaviour: Behaviour) -> None:
    functions = FakeFunctions(Authorize=behaviour, Logout=ok)

    reply = request(gateway_with(functions), "POST", "/v1/logout", headers={"Authorization": "Bearer good"})

    assert (reply.status, reply.json()) == (500, {"message": "Internal Server Error"})
    assert functions.events_of("Logout") == []


def test_answers_are_cached_per_identity_for_reauthorize_every_seconds_allow_and_deny_alike() -> None:
    functions = FakeFunctions(Authorize=allow_token_good, Logout=ok, StartAction=ok)
    clock = FakeClock()
    gateway = gateway_with(functions, clock=clock)
    good, bad = {"Authorization": "Bearer good"}, {"Authorization": "Bearer bad"}

    statuses = [
        request(gateway, "POST", "/v1/logout", headers=good).status,
        request(gateway, "POST", "/v1/actions", headers=good).status,  # same identity, another route: cached
        request(gateway, "POST", "/v1/logout", headers=bad).status,
        request(gateway, "POST", "/v1/logout", headers=bad).status,  # a deny is cached too
    ]
    assert statuses == [200, 200, 403, 403]
    assert [event["identitySource"] for event in functions.events_of("Authorize")] == [["Bearer good"], ["Bearer bad"]]

    clock.now += 239
    request(gateway, "POST", "/v1/logout", headers=good)
    assert len(functions.events_of("Authorize")) == 2
    clock.now += 1
    request(gateway, "POST", "/v1/logout", headers=good)
    assert len(functions.events_of("Authorize")) == 3


def test_with_reauthorize_every_0_every_request_calls_the_authorizer() -> None:
    functions = FakeFunctions(Authorize=allow_token_good, Logout=ok)
    gateway = gateway_with(functions, token_authorizer=authorizer(ttl_seconds=0))

    for _ in range(3):
        request(gateway, "POST", "/v1/logout", headers={"Authorization": "Bearer good"})

    assert len(functions.events_of("Authorize")) == 3


def test_an_authorizer_failure_is_not_cached() -> None:
    calls = 0

    def fails_once(event: dict[str, Any]) -> dict[str, Any]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise TimeoutError("the first call fails")
        return {"isAuthorized": True}

    functions = FakeFunctions(Authorize=fails_once, Logout=ok)
    gateway = gateway_with(functions)

    first = request(gateway, "POST", "/v1/logout", headers={"Authorization": "Bearer good"})
    second = request(gateway, "POST", "/v1/logout", headers={"Authorization": "Bearer good"})

    assert (first.status, second.status) == (500, 200)


def test_an_iam_policy_answer_is_checked_against_each_route() -> None:
    def policy_for_logout_only(event: dict[str, Any]) -> dict[str, Any]:
        logout_arn = event["routeArn"].replace("/POST/v1/actions", "/POST/v1/logout")
        statement = {"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": logout_arn}
        return {"principalId": "u-1", "policyDocument": {"Version": "2012-10-17", "Statement": [statement]}}

    functions = FakeFunctions(Authorize=policy_for_logout_only, Logout=ok, StartAction=ok)
    gateway = gateway_with(functions, token_authorizer=authorizer(simple_responses=False))
    token = {"Authorization": "Bearer any"}

    assert request(gateway, "POST", "/v1/logout", headers=token).status == 200
    assert request(gateway, "POST", "/v1/actions", headers=token).status == 403


# --- IAM authorization (AWS_IAM routes) ---


def signed_request(
    gateway: Gateway,
    method: str,
    path: str,
    body: bytes = b"",
    *,
    credentials: Credentials = LOCAL_CREDENTIALS,
    region: str = "us-east-1",
    signed_at: datetime | None = None,
    sent_path: str | None = None,
    sent_body: bytes | None = None,
    sent_headers: dict[str, str] | None = None,
) -> Reply:
    """Sign ``method path body`` as clients/signed_api.py does (at ``signed_at``, default now), then send it, or
    what ``sent_path``, ``sent_body`` and ``sent_headers`` say instead."""

    async def send() -> Reply:
        async with TestClient(TestServer(gateway.app())) as client:
            headers = {"Content-Type": "application/json"} if body else {}
            prepared = requests.Request(method, str(client.make_url(path)), data=body, headers=headers).prepare()
            with mock.patch("botocore.auth.get_current_datetime", return_value=signed_at or naive_utc_now()):
                ExecuteApiAuth(credentials, region)(prepared)
            names = ("Content-Type", "Authorization", "X-Amz-Date", "X-Amz-Security-Token")
            sent = {name: prepared.headers[name] for name in names if name in prepared.headers}
            response = await client.request(
                method,
                sent_path or path,
                data=body if sent_body is None else sent_body,
                headers=sent | (sent_headers or {}),
            )
            return Reply(response.status, response.headers, await response.read())

    return asyncio.run(send())


def naive_utc_now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)  # what botocore's signer reads its clock as


def echo_event(event: dict[str, Any]) -> dict[str, Any]:
    return {"statusCode": 200, "body": json.dumps(event)}


def test_a_request_signed_with_the_local_credentials_reaches_the_function_with_its_iam_caller() -> None:
    functions = FakeFunctions(ServerScores=echo_event, Authorize=allow_token_good)

    reply = signed_request(gateway_with(functions), "POST", "/v1/server/scores", b'{"score":420}')

    assert reply.status == 200
    event = reply.json()
    assert event["requestContext"]["authorizer"] == {
        "iam": {
            "accessKey": ACCESS_KEY_ID,
            "accountId": "123456789012",
            "callerId": event["requestContext"]["authorizer"]["iam"]["userId"],
            "cognitoIdentity": None,
            "principalOrgId": None,
            "userArn": "arn:aws:iam::123456789012:user/local-operator",
            "userId": event["requestContext"]["authorizer"]["iam"]["userId"],
        }
    }
    assert re.fullmatch(r"AIDA[A-Z0-9]{17}", event["requestContext"]["authorizer"]["iam"]["userId"])
    assert (event["body"], event["routeKey"]) == ('{"score":420}', "POST /v1/server/scores")
    assert functions.events_of("Authorize") == []  # no Lambda authorizer on an IAM route


def test_the_signature_covers_the_path_parameters_and_the_query_string() -> None:
    functions = FakeFunctions(Moderation=echo_event)
    gateway = gateway_with(functions)
    path = "/v1/moderation/players/u-7?reason=spam%20bot&limit=5"

    allowed = signed_request(gateway, "GET", path)
    other_query = signed_request(gateway, "GET", path, sent_path="/v1/moderation/players/u-7?reason=spam&limit=5")
    other_player = signed_request(
        gateway, "GET", path, sent_path="/v1/moderation/players/u-8?reason=spam%20bot&limit=5"
    )

    assert allowed.status == 200
    assert allowed.json()["pathParameters"] == {"user_id": "u-7"}
    assert allowed.json()["queryStringParameters"] == {"reason": "spam bot", "limit": "5"}
    assert [(reply.status, reply.json()["message"]) for reply in (other_query, other_player)] == [
        (403, SIGNATURE_MISMATCH),
        (403, SIGNATURE_MISMATCH),
    ]
    assert len(functions.events_of("Moderation")) == 1


@pytest.mark.parametrize(
    "headers",
    [pytest.param({}, id="no-authorization"), pytest.param({"Authorization": "Bearer good"}, id="a-player-token")],
)
def test_an_unsigned_request_to_an_iam_route_is_403_forbidden_and_calls_nothing(headers: dict[str, str]) -> None:
    functions = FakeFunctions(ServerScores=ok, Authorize=allow_token_good)

    reply = request(gateway_with(functions), "POST", "/v1/server/scores", json={"score": 1}, headers=headers)

    assert (reply.status, reply.json()) == (403, {"message": "Forbidden"})
    assert "x-amzn-ErrorType" not in reply.headers
    assert functions.calls == []


@pytest.mark.parametrize(
    ("signing", "message", "error_type"),
    [
        pytest.param(
            {"credentials": Credentials(ACCESS_KEY_ID, "not-the-local-secret")},
            SIGNATURE_MISMATCH,
            "InvalidSignatureException",
            id="wrong-secret",
        ),
        pytest.param(
            {"credentials": Credentials("AKIAUNKNOWNKEY000000", SECRET_ACCESS_KEY)},
            "The security token included in the request is invalid.",
            "AccessDeniedException",
            id="unknown-access-key",
        ),
        pytest.param({"sent_body": b'{"score":1000}'}, SIGNATURE_MISMATCH, "InvalidSignatureException", id="tampered"),
        pytest.param(
            {"sent_headers": {"Content-Type": "text/plain"}},
            SIGNATURE_MISMATCH,
            "InvalidSignatureException",
            id="tampered-signed-header",
        ),
        pytest.param(
            {"region": "eu-west-1"},
            "Credential should be scoped to a valid region, not 'eu-west-1'.",
            "InvalidSignatureException",
            id="another-region",
        ),
        pytest.param(
            {"sent_headers": {"Authorization": "AWS4-HMAC-SHA256 Credential=x"}},
            "Authorization header requires 'Signature' parameter. "
            "Authorization header requires 'SignedHeaders' parameter.",
            "IncompleteSignatureException",
            id="incomplete-authorization",
        ),
    ],
)
def test_a_badly_signed_request_is_403_with_aws_message_and_error_type(
    signing: dict[str, Any], message: str, error_type: str
) -> None:
    functions = FakeFunctions(ServerScores=ok)

    reply = signed_request(gateway_with(functions), "POST", "/v1/server/scores", b'{"score":1}', **signing)

    assert (reply.status, reply.json()) == (403, {"message": message})
    assert reply.headers["x-amzn-ErrorType"] == error_type
    assert functions.calls == []


@pytest.mark.parametrize(
    ("skew", "expected"),
    [
        (
            -timedelta(minutes=6),
            r"Signature expired: \d{8}T\d{6}Z is now earlier than \d{8}T\d{6}Z \(\d{8}T\d{6}Z - 5 min\.\)",
        ),
        (
            timedelta(minutes=6),
            r"Signature not yet current: \d{8}T\d{6}Z is still later than \d{8}T\d{6}Z \(\d{8}T\d{6}Z \+ 5 min\.\)",
        ),
    ],
)
def test_a_signature_more_than_5_minutes_from_the_gateways_clock_is_refused(skew: timedelta, expected: str) -> None:
    functions = FakeFunctions(ServerScores=ok)
    gateway = gateway_with(functions)

    within = signed_request(gateway, "POST", "/v1/server/scores", b"{}", signed_at=naive_utc_now() + skew * 0.6)
    beyond = signed_request(gateway, "POST", "/v1/server/scores", b"{}", signed_at=naive_utc_now() + skew)

    assert within.status == 200
    assert beyond.status == 403
    assert re.fullmatch(expected, beyond.json()["message"])
    assert beyond.headers["x-amzn-ErrorType"] == "InvalidSignatureException"


def test_a_route_naming_an_authorizer_the_api_does_not_declare_is_refused_at_start() -> None:
    with pytest.raises(ValueError, match="unknown authorizer"):
        Gateway([HttpRoute("POST", "/v1/x", "X", "aws_iam")], {}, FakeFunctions(), say=lambda _: None)


# --- Static files ---


def test_static_files_are_served_from_web_but_never_outside_it(tmp_path: Path) -> None:
    web_dir = tmp_path / "web"
    web_dir.mkdir()
    (web_dir / "index.html").write_text("<h1>board</h1>")
    (tmp_path / "secret.txt").write_text("not public")
    gateway = gateway_with(FakeFunctions(Top=ok), web_dir=web_dir)

    index = request(gateway, "GET", "/")
    escape = request(gateway, "GET", "/%2e%2e/secret.txt")

    assert (index.status, index.body) == (200, b"<h1>board</h1>")
    assert index.headers["Content-Type"].startswith("text/html")
    assert (escape.status, escape.json()) == (404, {"message": "Not Found"})
    assert request(gateway, "GET", "/v1/scores/top").body == b"ok"  # routes come before files
