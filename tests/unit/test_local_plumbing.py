"""What the local APIs share: SigV4 verification as AWS checks a signed request, and the authorizer cache."""

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from local.plumbing import AuthorizerCache, SignatureError, invoke_within, verify_sigv4
from local.workers import Invocation

KEYS = ("ASIALOCALSTACKEXAMPLE", "local-secret-access-key")
URL = "http://127.0.0.1:3001/event"
BODY = json.dumps({"channel": "/boards/global", "events": ['{"type":"top10"}']}).encode()


def signed(body: bytes = BODY, keys: tuple[str, str] = KEYS, url: str = URL, **headers: str) -> dict[str, str]:
    """The headers of a request botocore signed (names in lower case, host included, as a server reads them)."""
    request = AWSRequest(method="POST", url=url, data=body, headers={"content-type": "application/json", **headers})
    SigV4Auth(Credentials(*keys, "any-session-token"), "appsync", "us-east-1").add_auth(request)
    return {name.lower(): value for name, value in request.headers.items()} | {"host": url.split("/")[2]}


def verify(headers: dict[str, str], body: bytes = BODY, path: str = "/event", **options: Any) -> str:
    return verify_sigv4("POST", path, headers, [body], service="appsync", credentials=KEYS, **options)


def test_a_request_botocore_signed_with_the_local_keys_is_verified_and_names_its_access_key() -> None:
    assert verify(signed()) == KEYS[0]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"body": BODY.replace(b"global", b"other")}, "does not match"),
        ({"path": "/event/other"}, "does not match"),
        ({"headers": {"content-type": "text/plain"}}, "does not match"),
        ({"headers": {"host": "elsewhere:3001"}}, "does not match"),
        ({"headers": {"authorization": ""}}, "Missing Authentication Token"),
        ({"headers": {"authorization": "Bearer token"}}, "Missing Authentication Token"),
        ({"headers": {"x-amz-date": "yesterday"}}, "Date must be in ISO-8601 'basic format'"),
    ],
)
def test_a_tampered_or_unsigned_request_is_refused(change: dict[str, Any], message: str) -> None:
    headers = signed() | change.get("headers", {})

    with pytest.raises(SignatureError, match=message):
        verify(headers, change.get("body", BODY), change.get("path", "/event"))


def test_a_signature_more_than_five_minutes_away_from_the_clock_has_expired() -> None:
    headers = signed()
    signed_at = datetime.strptime(headers["x-amz-date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)

    assert verify(headers, now=signed_at + timedelta(minutes=4)) == KEYS[0]
    for skew, message in ((timedelta(minutes=6), "Signature expired"), (-timedelta(minutes=6), "not yet current")):
        with pytest.raises(SignatureError, match=message):
            verify(headers, now=signed_at + skew)


def test_other_credentials_are_refused_whatever_the_session_token() -> None:
    with pytest.raises(SignatureError, match="security token included in the request is invalid"):
        verify(signed(keys=("AKIAOTHER", KEYS[1])))
    with pytest.raises(SignatureError, match="does not match"):
        verify(signed(keys=(KEYS[0], "another-secret")))


def test_a_signed_content_hash_must_be_the_bodys() -> None:
    headers = signed(**{"X-Amz-Content-SHA256": "0" * 64})

    with pytest.raises(SignatureError, match="does not match"):
        verify(headers)


def test_one_of_several_candidate_bodies_may_match() -> None:
    compact = json.dumps({"channel": "/boards/global"}, separators=(",", ":")).encode()
    spaced = json.dumps({"channel": "/boards/global"}).encode()

    assert (
        verify_sigv4("POST", "/event", signed(spaced), [compact, spaced], service="appsync", credentials=KEYS)
        == (KEYS[0])
    )


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_authorizer_cache_keeps_each_answer_for_its_own_time_to_live_and_zero_means_not_at_all() -> None:
    clock = FakeClock()
    cache: AuthorizerCache[str, str] = AuthorizerCache(clock)

    cache.put("short", "allow", 10)
    cache.put("long", "deny", 60)
    cache.put("never", "allow", 0)
    clock.now += 30

    assert (cache.get("short"), cache.get("long"), cache.get("never")) == (None, "deny", None)


def test_invoke_within_stops_waiting_at_the_timeout_while_the_invocation_goes_on() -> None:
    finished: list[str] = []

    class SlowFunctions:
        async def invoke(self, function_id: str, event: Any) -> Invocation:
            await asyncio.sleep(0.2)
            finished.append(function_id)
            return Invocation(result=event)

    async def scenario() -> tuple[Invocation | None, Invocation | None]:
        late = await invoke_within(SlowFunctions(), "Slow", {}, timeout_ms=50)
        in_time = await invoke_within(SlowFunctions(), "Quick", {"n": 1}, timeout_ms=1000)
        return late, in_time

    late, in_time = asyncio.run(scenario())

    assert late is None
    assert in_time is not None
    assert in_time.result == {"n": 1}
    assert finished == ["Slow", "Quick"]
