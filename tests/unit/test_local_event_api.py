"""The local Event API's pure parts: channels, the auth subprotocol, frames, the authorizer's answers, the events its
authorizer and handlers get, AppSync's limits and the meter. The protocol itself runs in
tests/integration/test_local_event_api.py, over real workers."""

import base64
import json
import struct
from typing import Any

import pytest

from clients.event_api import header_subprotocol
from local.event_api import (
    MAX_EVENT_BYTES,
    MAX_PUBLISH_BYTES,
    AuthorizerAnswer,
    Caller,
    Origin,
    Refusal,
    Usage,
    authorizer_event,
    channel_segments,
    check_events,
    connection_auth,
    data_frame_prefix,
    event_api_address,
    handler_event,
    local_urls,
    operation_id,
    signed_bodies,
    text_frame,
)
from local.specs import AWS_IAM, AWS_LAMBDA, ChannelNamespaceSpec, EventApiSpec

API = EventApiSpec(
    logical_id="Live",
    api_id="abcdefghijklmnopqrstuvwxyz",
    name="live",
    http_domain="abcdefghijklmnopqrstuvwxyz.appsync-api.us-east-1.amazonaws.com",
    realtime_domain="abcdefghijklmnopqrstuvwxyz.appsync-realtime-api.us-east-1.amazonaws.com",
    auth_types=(AWS_LAMBDA, AWS_IAM),
    connection_auth=(AWS_LAMBDA,),
    namespaces={"boards": ChannelNamespaceSpec("boards", (AWS_IAM,), (AWS_LAMBDA,))},
)


@pytest.mark.parametrize(
    ("path", "segments"),
    [
        ("/boards/global", ("boards", "global")),
        ("boards/global/", ("boards", "global")),
        ("/boards", ("boards",)),
        ("/a/b-c/D3/e/f", ("a", "b-c", "D3", "e", "f")),
        ("/" + "x" * 50, ("x" * 50,)),
    ],
)
def test_a_channel_is_one_to_five_segments_of_letters_digits_and_inner_hyphens(path: str, segments: tuple[str]) -> None:
    assert channel_segments(path) == segments


@pytest.mark.parametrize(
    "path", ["", "/", "//", "/a//b", "/-a", "/a-", "/a/b/c/d/e/f", "/" + "x" * 51, "/a_b", "/a.b", "/é", None, 7]
)
def test_anything_else_is_not_a_channel(path: Any) -> None:
    with pytest.raises(Refusal) as refused:
        channel_segments(path)

    assert refused.value.error_type == "BadRequestException"


def test_a_star_may_end_a_subscriptions_path_below_its_namespace_and_nowhere_else() -> None:
    assert channel_segments("/boards/*", wildcard=True) == ("boards", "*")
    assert channel_segments("/boards/a/*", wildcard=True) == ("boards", "a", "*")
    for path in ("/*", "/boards/*/a", "/boards/a*", "/boards/**"):
        with pytest.raises(Refusal):
            channel_segments(path, wildcard=True)
    with pytest.raises(Refusal):
        channel_segments("/boards/*")  # a publish names one channel


@pytest.mark.parametrize("key", ["a", "A-b_c+9", "x" * 128])
def test_an_operation_id_is_1_to_128_letters_digits_hyphens_underscores_or_pluses(key: str) -> None:
    assert operation_id({"id": key}) == key


@pytest.mark.parametrize("key", ["", "x" * 129, "a b", "a/b", "é", None, 12])
def test_other_operation_ids_are_refused(key: Any) -> None:
    with pytest.raises(Refusal, match="id must be"):
        operation_id({"id": key})


def test_the_header_subprotocol_carries_the_connections_authorization_as_base64url_json() -> None:
    protocol = header_subprotocol({"host": API.http_domain, "Authorization": "token+/="})

    assert "=" not in protocol
    assert connection_auth(["aws-appsync-event-ws", protocol], {"Host": "127.0.0.1:3001"}) == {
        "host": API.http_domain,
        "authorization": "token+/=",
    }


def test_without_a_header_subprotocol_the_upgrade_requests_own_headers_authorize_it() -> None:
    headers = {"Host": "127.0.0.1:3001", "Authorization": "anonymous"}

    assert connection_auth(["aws-appsync-event-ws"], headers) == {
        "host": "127.0.0.1:3001",
        "authorization": "anonymous",
    }


@pytest.mark.parametrize(
    "encoded",
    [
        "%%%",
        base64.urlsafe_b64encode(b"not json").decode(),
        base64.urlsafe_b64encode(b'["a list"]').decode(),
        base64.urlsafe_b64encode(b'{"host": 1}').decode(),
    ],
)
def test_a_header_subprotocol_that_is_not_a_json_object_of_strings_is_refused(encoded: str) -> None:
    with pytest.raises(ValueError, match="header- subprotocol"):
        connection_auth([f"header-{encoded}"], {})


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536, 300_000])
def test_a_text_frame_is_a_final_unmasked_frame_with_the_shortest_length_encoding(size: int) -> None:
    payload = b"x" * size

    frame = text_frame(payload)

    assert frame[0] == 0x81  # FIN, text
    if size < 126:
        assert (frame[1], frame[2:]) == (size, payload)
    elif size < 65536:
        assert (frame[1], struct.unpack("!H", frame[2:4])[0], frame[4:]) == (126, size, payload)
    else:
        assert (frame[1], struct.unpack("!Q", frame[2:10])[0], frame[10:]) == (127, size, payload)


@pytest.mark.parametrize("event", ['{"type": "top10", "items": [1, 2]}', '"a \\"quoted\\" text"', "[]", "42"])
def test_a_data_frame_carries_the_event_as_one_json_string(event: str) -> None:
    payload = data_frame_prefix("sub-1+a") + json.dumps(event).encode() + b"}"

    assert json.loads(payload) == {"type": "data", "id": "sub-1+a", "event": event}


def test_a_websocket_operations_body_may_have_been_signed_compact_or_spaced_and_an_http_one_as_sent() -> None:
    assert signed_bodies({"channel": "/a/b"}) == [b'{"channel":"/a/b"}', b'{"channel": "/a/b"}']
    assert signed_bodies(b'{"channel" : "/a/b"}') == [b'{"channel" : "/a/b"}']


def test_an_authorizers_answer_gives_the_decision_its_handler_context_and_ttl_override() -> None:
    assert AuthorizerAnswer.parse({"isAuthorized": True}) == AuthorizerAnswer(True, {}, None)
    assert AuthorizerAnswer.parse({"isAuthorized": False, "handlerContext": {"u": 1}, "ttlOverride": 0}) == (
        AuthorizerAnswer(False, {"u": 1}, 0)
    )


@pytest.mark.parametrize(
    "answer",
    [
        None,
        "yes",
        {},
        {"isAuthorized": "true"},
        {"isAuthorized": True, "handlerContext": ["u"]},
        {"isAuthorized": True, "ttlOverride": "60"},
        {"isAuthorized": True, "ttlOverride": 3601},
        {"isAuthorized": True, "ttlOverride": True},
    ],
)
def test_a_malformed_answer_is_refused(answer: Any) -> None:
    with pytest.raises(ValueError, match=r"isAuthorized|handlerContext|ttlOverride"):
        AuthorizerAnswer.parse(answer)


def test_the_authorizer_gets_the_token_the_operation_and_on_subscribe_or_publish_the_channel() -> None:
    connect = authorizer_event(API, "token", "EVENT_CONNECT", None, {"host": "h"})
    subscribe = authorizer_event(API, "token", "EVENT_SUBSCRIBE", ("boards", "global"), {})

    assert connect["authorizationToken"] == "token"
    assert connect["requestHeaders"] == {"host": "h"}
    context = connect["requestContext"]
    assert (context["apiId"], context["accountId"], context["operation"]) == (
        API.api_id,
        "123456789012",
        "EVENT_CONNECT",
    )
    assert (context["channelNamespaceName"], context["channel"]) == (None, None)
    assert len(context["requestId"]) == 36
    assert (subscribe["requestContext"]["channelNamespaceName"], subscribe["requestContext"]["channel"]) == (
        "boards",
        "/boards/global",
    )


def test_a_handler_gets_appsyncs_context_with_the_identity_of_the_auth_mode() -> None:
    origin = Origin({"x-forwarded-for": "10.0.0.1"}, "10.0.0.1")
    items = [{"id": "e-1", "payload": {"n": 1}}]

    lambda_event = handler_event(Caller(AWS_LAMBDA, handler_context={"u": 1}), origin, ("boards", "*"), "SUBSCRIBE")
    iam_event = handler_event(Caller(AWS_IAM, access_key="AKID"), origin, ("boards", "a"), "PUBLISH", items)

    assert lambda_event == {
        "identity": {"handlerContext": {"u": 1}},
        "result": None,
        "request": {"headers": {"x-forwarded-for": "10.0.0.1"}, "domainName": None},
        "info": {
            "channel": {"path": "/boards/*", "segments": ["boards", "*"]},
            "channelNamespace": {"name": "boards"},
            "operation": "SUBSCRIBE",
        },
        "error": None,
        "prev": None,
        "stash": {},
        "outErrors": [],
        "events": None,
    }
    assert iam_event["identity"]["username"] == "AKID"
    assert iam_event["identity"]["sourceIp"] == ["10.0.0.1"]
    assert iam_event["events"] == items


@pytest.mark.parametrize(
    ("events", "message"),
    [
        ([], "1 to 5"),
        (["1"] * 6, "1 to 5"),
        ("1", "1 to 5"),
        ([{"n": 1}], "event 0 is not a string"),
        (["1", "x" * (MAX_EVENT_BYTES - 1) + "é"], "event 1 is over"),
        (["{not json"], "event 0 is not valid JSON"),
    ],
)
def test_a_publish_outside_appsyncs_limits_is_a_bad_request(events: Any, message: str) -> None:
    with pytest.raises(Refusal, match=message) as refused:
        check_events(events, 100)

    assert refused.value.error_type == "BadRequestException"


def test_five_events_at_their_limit_still_exceed_a_publishs_12_megabytes_with_their_envelope() -> None:
    events = [json.dumps("x" * (MAX_EVENT_BYTES - 2))] * 5
    payload = signed_bodies({"channel": "/boards/global", "events": events})[0]

    check_events(events[:4], MAX_PUBLISH_BYTES)
    with pytest.raises(Refusal, match="publish is over"):
        check_events(events, len(payload))


def test_the_meter_counts_appsync_operations_and_connection_minutes() -> None:
    usage = Usage(connects=2, subscribes=3, events_published=4, deliveries=10, closed_connection_seconds=30.0)

    report = usage.report(open_since=[100.0, 130.0], subscriptions=3, now=160.0)

    assert report["operations"] == 2 + 3 + 4 + 10
    assert report["connection_minutes"] == 2.0  # 30 s closed, 60 s and 30 s open
    assert (report["open_connections"], report["subscriptions"]) == (2, 3)
    assert "closed_connection_seconds" not in report


def test_functions_reach_the_local_event_api_where_the_template_names_the_deployed_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LOCAL_EVENT_API_PORT", "4001")
    monkeypatch.delenv("LOCAL_EVENT_API_HOST", raising=False)

    assert event_api_address() == ("127.0.0.1", 4001)
    assert local_urls(API, "127.0.0.1", 4001) == {
        f"https://{API.http_domain}": "http://127.0.0.1:4001",
        f"wss://{API.realtime_domain}": "ws://127.0.0.1:4001",
    }
