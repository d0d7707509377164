"""Request bodies in, problem details out: bad input is a clear 4xx in our words, never a library's."""

import base64
import json
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from leaderboard import http
from leaderboard.bodies import LoginBody, RegisterBody
from leaderboard.identity import Identity
from leaderboard.problems import Conflict, InvalidRequest, PayloadTooLarge, TooManyRequests, UnsupportedMediaType
from tests.conftest import load_event


def body_of(response: dict[str, Any]) -> dict[str, Any]:
    return dict(json.loads(response["body"]))


def invalid(event_name: str) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as caught:
        http.parse_body(load_event(event_name), RegisterBody)
    return caught.value


def test_a_valid_body_is_parsed() -> None:
    body = http.parse_body(load_event("register_ok"), RegisterBody)
    assert (body.username, body.password, body.display_name) == ("alice", "correct horse battery", "Alice")


@pytest.mark.parametrize(
    "content_type",
    ["application/json", "Application/JSON", "application/json; charset=UTF-8", 'application/json;charset="utf-8"'],
)
def test_a_body_declared_json_is_parsed(content_type: str) -> None:
    event = load_event("register_ok")
    event["headers"]["content-type"] = content_type
    assert http.parse_body(event, RegisterBody).username == "alice"


@pytest.mark.parametrize(
    "content_type",
    [None, "text/plain", "application/x-www-form-urlencoded", "application/json; charset=latin-1", "application/jsonp"],
)
def test_a_body_not_declared_json_is_415(content_type: str | None) -> None:
    event = load_event("register_ok")
    event["headers"].pop("content-type", None)
    if content_type is not None:
        event["headers"]["content-type"] = content_type

    with pytest.raises(UnsupportedMediaType):
        http.parse_body(event, RegisterBody)


@pytest.mark.parametrize(
    "body",
    [
        '{"username": "alice", "username": "mallory", "password": "correct horse battery"}',
        '{"username": "alice", "password": "correct horse battery", "password": "x"}',
        '{"username": "alice", "password": "correct horse battery", "display_name": "A", "display_name": "A"}',
    ],
)
def test_a_key_given_twice_is_400_whatever_the_values(body: str) -> None:
    event = load_event("register_ok")
    event["body"] = body

    with pytest.raises(InvalidRequest, match="more than once"):
        http.parse_body(event, RegisterBody)


def test_a_base64_body_is_decoded_first() -> None:
    assert http.parse_body(load_event("register_base64_body"), RegisterBody).username == "carol"


def test_a_body_that_is_not_base64_is_invalid() -> None:
    event = {**load_event("register_ok"), "isBase64Encoded": True, "body": "%%%"}
    with pytest.raises(InvalidRequest):
        http.parse_body(event, RegisterBody)


@pytest.mark.parametrize(
    ("event_name", "detail"),
    [
        ("register_malformed_json", "The request body is not valid JSON."),
        ("register_not_an_object", "The request body must be a JSON object."),
    ],
)
def test_a_body_that_is_not_a_json_object_is_invalid(event_name: str, detail: str) -> None:
    assert invalid(event_name).detail == detail


def test_an_empty_body_is_invalid() -> None:
    event = {**load_event("register_ok"), "body": None}
    with pytest.raises(InvalidRequest):
        http.parse_body(event, RegisterBody)


def test_each_wrong_field_is_named_in_our_own_words() -> None:
    problem = invalid("register_wrong_types")

    fields = {error["field"]: error["detail"] for error in problem.body()["errors"]}
    assert set(fields) == {"username", "password"}  # a null display_name means "choose one for me"
    assert fields["username"].startswith("has the wrong type; expected a string of 3 to 32")
    assert "pydantic" not in json.dumps(problem.body()).lower()
    assert "Input should be" not in json.dumps(problem.body())


@pytest.mark.parametrize(
    ("event_name", "field", "detail"),
    [
        ("register_extra_field", "is_admin", "is not a field of this request"),
        ("register_missing_password", "password", "is required"),
        ("register_short_password", "password", "must be a string of 8 to 128 characters"),
        ("register_oversize_password", "password", "must be a string of 8 to 128 characters"),
        ("register_bad_username", "username", "must be a string of 3 to 32 letters, digits, '_', '.' or '-'"),
    ],
)
def test_field_problems(event_name: str, field: str, detail: str) -> None:
    assert invalid(event_name).body()["errors"] == [{"field": field, "detail": detail}]


@pytest.mark.parametrize(
    "display_name",
    ["", "   ", "a\nb", "Bob\n", "\x00", "Bob\x85", "Bob\u202e", "\u200b", "Bo\u200db", "x" * 33],
)
def test_display_names_must_be_printable(display_name: str) -> None:
    event = load_event("register_ok")
    event["body"] = json.dumps({"username": "alice", "password": "correct horse battery", "display_name": display_name})
    with pytest.raises(InvalidRequest):
        http.parse_body(event, RegisterBody)


@pytest.mark.parametrize("display_name", ["Bob Ross", "Zoë O'Brien-Núñez", "李小龍", "x" * 32])
def test_display_names_may_be_any_visible_text(display_name: str) -> None:
    event = load_event("register_ok")
    event["body"] = json.dumps({"username": "alice", "password": "correct horse battery", "display_name": display_name})
    assert http.parse_body(event, RegisterBody).display_name == display_name


@pytest.mark.parametrize("username", ["victim\n", "victim\r\n", " victim", "ab", "x" * 33, "bob ross", "zoë"])
def test_usernames_are_plain_ascii_names(username: str) -> None:
    event = load_event("register_ok")
    event["body"] = json.dumps({"username": username, "password": "correct horse battery"})
    with pytest.raises(InvalidRequest):
        http.parse_body(event, RegisterBody)


def test_the_size_limit_counts_bytes_not_characters() -> None:
    event = load_event("register_ok")
    event["body"] = json.dumps({"username": "alice", "password": "€" * 100}, ensure_ascii=False)  # 300 bytes
    with pytest.raises(PayloadTooLarge):
        http.parse_body(event, RegisterBody, max_bytes=250)


def test_an_oversize_body_is_refused_before_parsing() -> None:
    with pytest.raises(PayloadTooLarge):
        http.parse_body(load_event("register_oversize_body"), RegisterBody)
    with pytest.raises(PayloadTooLarge):
        http.parse_body(load_event("login_oversize_password"), LoginBody)


def test_endpoint_answers_problems_as_problem_details() -> None:
    @http.endpoint
    def handler(event: http.Event, context: Any) -> http.Response:
        raise Conflict("This username is taken; choose another.")

    response = handler({}, None)

    assert response["statusCode"] == 409
    assert response["headers"]["Content-Type"] == "application/problem+json"
    assert body_of(response) == {
        "type": "urn:leaderboard:problem:conflict",
        "title": "Conflict",
        "status": 409,
        "detail": "This username is taken; choose another.",
    }


def test_retry_after_is_sent_with_429() -> None:
    response = http.problem_response(TooManyRequests("Too many failed logins; try again later.", retry_after=42))
    assert response["statusCode"] == 429
    assert response["headers"]["Retry-After"] == "42"


def test_an_unexpected_error_is_a_bare_500_that_leaks_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    @http.endpoint
    def handler(event: http.Event, context: Any) -> http.Response:
        raise KeyError("secret internals: table leaderboard-users")

    response = handler({}, None)

    assert response["statusCode"] == 500
    assert "secret internals" not in response["body"]
    assert "Traceback" not in response["body"]
    assert body_of(response)["title"] == "Internal error"


def test_json_response_without_body_has_none() -> None:
    assert http.json_response(204) == {"statusCode": 204, "headers": {}}


def test_caller_and_source_ip_come_from_the_request_context() -> None:
    event = load_event("logout_unknown_token")
    assert http.caller(event) == Identity(
        user_id="0f8e3c1d9b7a4e2f8c6d5b4a39281706", username="alice", display_name="Alice"
    )
    assert http.source_ip(event) == "203.0.113.10"


def test_base64_bodies_are_measured_after_decoding() -> None:
    raw = json.dumps({"username": "alice", "password": "p" * 100})
    event = {**load_event("login_ok"), "isBase64Encoded": True, "body": base64.b64encode(raw.encode()).decode()}

    assert http.parse_body(event, LoginBody, max_bytes=len(raw)).password == "p" * 100
    with pytest.raises(PayloadTooLarge):
        http.parse_body(event, LoginBody, max_bytes=len(raw) - 1)


@pytest.mark.parametrize(
    "failure",
    [
        ClientError({"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"}}, "PutItem"),
        EndpointConnectionError(endpoint_url="https://dynamodb.us-east-1.amazonaws.com"),
    ],
)
def test_an_aws_service_that_fails_after_the_sdks_retries_is_503_with_retry_after(failure: Exception) -> None:
    @http.endpoint
    def handler(event: http.Event, context: Any) -> http.Response:
        raise failure

    response = handler(load_event("register_ok"), None)

    assert (response["statusCode"], response["headers"]["Retry-After"]) == (503, "1")
    assert "dynamodb" not in response["body"].lower()
    assert "throughput" not in response["body"].lower()
