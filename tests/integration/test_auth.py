"""The authentication routes end to end in-process: real handlers, DynamoDB and Secrets Manager from moto
(tables and secret built from template.yaml), the signing key read through the emulated Secrets extension."""

import contextlib
import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from functions.login import authorize, login, logout, logout_everywhere, refresh_token, register
from functions.login import change_password as change_password_handler
from leaderboard import auth, login_throttle, rate_limits, signing_keys, tokens
from leaderboard import security_events as security_events_module
from leaderboard.config import settings
from leaderboard.identity import Identity
from leaderboard.tokens import issue_access_token
from local.template import Template
from tests.conftest import FakeLambdaContext, load_event
from tests.integration.conftest import PROJECT_ROOT, Stack, limits

PASSWORD = "correct horse battery"


def call(handler: Any, event: dict[str, Any]) -> tuple[int, dict[str, Any], dict[str, str]]:
    response = handler.lambda_handler(event, FakeLambdaContext())
    body = json.loads(response["body"]) if response.get("body") else {}
    return response["statusCode"], body, response.get("headers", {})


def with_body(event_name: str, body: dict[str, Any] | str, **context: Any) -> dict[str, Any]:
    event = load_event(event_name)
    event["body"] = body if isinstance(body, str) else json.dumps(body)
    if "source_ip" in context:
        event["requestContext"]["http"]["sourceIp"] = context["source_ip"]
    if "caller" in context:
        event["requestContext"]["authorizer"] = {"lambda": context["caller"]}
    return event


def sign_up(username: str = "alice", password: str = PASSWORD) -> dict[str, Any]:
    status, body, _ = call(register, with_body("register_ok", {"username": username, "password": password}))
    assert status == 201, body
    return body


def log_in(username: str = "alice", password: str = PASSWORD, source_ip: str = "203.0.113.10") -> Any:
    return call(login, with_body("login_ok", {"username": username, "password": password}, source_ip=source_ip))


def authorizer_says(access_token: str) -> dict[str, Any]:
    event = load_event("authorize_garbage")
    event["headers"]["authorization"] = f"Bearer {access_token}"
    event["identitySource"] = [f"Bearer {access_token}"]
    return dict(authorize.lambda_handler(event, FakeLambdaContext()))


def refresh(token: str) -> Any:
    return call(refresh_token, with_body("refresh_token_unknown", {"refresh_token": token}))


def log_out(token: str, caller: dict[str, str]) -> Any:
    return call(logout, with_body("logout_unknown_token", {"refresh_token": token}, caller=caller))


# --- register --------------------------------------------------------------------------------------------------------


def test_register_creates_an_account(stack: Stack) -> None:
    status, body, _ = call(register, load_event("register_ok"))

    assert status == 201
    assert body["username"] == "alice"
    assert body["display_name"] == "Alice"
    assert set(body) == {"user_id", "username", "display_name"}
    stored = stack.items("UsersTable")
    assert len(stored) == 1
    assert stored[0]["password_hash"]["S"].startswith("$argon2id$")
    assert PASSWORD not in json.dumps(stored)


def test_a_taken_username_is_409_in_any_letter_case(stack: Stack) -> None:
    first = sign_up("alice")

    status, body, headers = call(
        register, with_body("register_ok", {"username": "ALICE", "password": "other pass 123"})
    )

    assert status == 409
    assert headers["Content-Type"] == "application/problem+json"
    assert body["status"] == 409
    assert [item["user_id"]["S"] for item in stack.items("UsersTable")] == [first["user_id"]]


@pytest.mark.parametrize(
    ("event_name", "status"),
    [
        ("register_malformed_json", 400),
        ("register_not_an_object", 400),
        ("register_wrong_types", 400),
        ("register_extra_field", 400),
        ("register_missing_password", 400),
        ("register_short_password", 400),
        ("register_oversize_password", 400),
        ("register_bad_username", 400),
        ("register_oversize_body", 413),
    ],
)
def test_bad_registrations_are_4xx_problems_and_store_nothing(stack: Stack, event_name: str, status: int) -> None:
    answered, body, headers = call(register, load_event(event_name))

    assert answered == status
    assert headers["Content-Type"] == "application/problem+json"
    assert set(body) >= {"type", "title", "status", "detail"}
    assert stack.items("UsersTable") == []
    assert stack.items("DisplayNamesTable") == []


# --- login -----------------------------------------------------------------------------------------------------------


def test_login_returns_a_token_pair_the_authorizer_accepts(stack: Stack) -> None:
    account = sign_up()

    status, body, headers = log_in()

    assert status == 200
    assert headers["Cache-Control"] == "no-store"
    assert set(body) == {"access_token", "refresh_token", "token_type", "expires_in", "user_id", "device_token"}
    assert (body["token_type"], body["expires_in"], body["user_id"]) == ("Bearer", 600, account["user_id"])
    assert authorizer_says(body["access_token"]) == {
        "isAuthorized": True,
        "context": {"user_id": account["user_id"], "username": "alice", "display_name": account["display_name"]},
    }


def test_login_is_case_insensitive_on_the_username(stack: Stack) -> None:
    sign_up("alice")
    assert log_in("Alice")[0] == 200


def test_an_unknown_user_and_a_wrong_password_get_the_same_answer(stack: Stack) -> None:
    sign_up()

    wrong_password = call(login, load_event("login_wrong_password"))
    unknown_user = call(login, load_event("login_unknown_user"))

    assert wrong_password == unknown_user
    assert wrong_password[0] == 401


@pytest.mark.parametrize(("event_name", "status"), [("login_wrong_types", 400), ("login_oversize_password", 413)])
def test_bad_login_bodies_are_4xx(stack: Stack, event_name: str, status: int) -> None:
    assert call(login, load_event(event_name))[0] == status
    assert stack.items("TokenFamiliesTable") == []


def test_guessing_from_one_address_is_throttled_but_the_owner_elsewhere_is_not(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    sign_up()
    monkeypatch.setattr(rate_limits, "clock", lambda: 1_800_000_000.0)
    for _ in range(settings.login_failures_per_account_from_address):
        assert log_in(password="wrong guess", source_ip="198.51.100.66")[0] == 401

    status, body, headers = log_in(source_ip="198.51.100.66")  # even the right password, from there

    assert (status, body["status"]) == (429, 429)
    assert 0 < int(headers["Retry-After"]) <= login_throttle.WINDOW_SECONDS
    assert log_in(source_ip="192.0.2.1")[0] == 200, "the owner, from another address, gets in"


def test_a_distributed_attack_is_throttled_per_account_until_the_window_ends(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    sign_up()
    now = 1_800_000_000.0
    monkeypatch.setattr(rate_limits, "clock", lambda: now)
    for attempt in range(settings.login_failures_per_account):
        assert log_in(password="wrong guess", source_ip=f"10.0.{attempt // 250}.{attempt % 250}")[0] == 401

    status, _, headers = log_in(source_ip="192.0.2.1")

    assert status == 429
    now += int(headers["Retry-After"])
    assert log_in(source_ip="192.0.2.1")[0] == 200, "never locked out for good"


def test_failed_logins_are_throttled_per_address(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    sign_up("victim")
    monkeypatch.setattr(rate_limits, "clock", lambda: 1_800_000_000.0)
    for attempt in range(settings.login_failures_per_address):
        assert log_in(f"guess{attempt}", "wrong guess", source_ip="198.51.100.7")[0] == 401

    assert log_in("victim", source_ip="198.51.100.7")[0] == 429
    assert log_in("victim", source_ip="198.51.100.8")[0] == 200


def test_an_ipv6_client_is_counted_by_its_slash_56(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given guesses from as many /64 networks of one /56 (one customer's share at many ISPs)
    sign_up()
    monkeypatch.setattr(rate_limits, "clock", lambda: 1_800_000_000.0)
    for attempt in range(settings.login_failures_per_account_from_address):
        assert log_in(password="wrong guess", source_ip=f"2001:db8:1:{attempt + 1:x}::1")[0] == 401

    # Then another /64 of that /56 is throttled, the next /56 is not
    assert log_in(source_ip="2001:db8:1:ff:ffff::1")[0] == 429
    assert log_in(source_ip="2001:db8:1:100::1")[0] == 200


def test_parallel_guesses_cannot_slip_past_the_limit(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    # Each attempt is reserved, in one conditional write, before its password check; DynamoDB applies the
    # condition atomically (the in-process stack serializes moto's DynamoDB requests to match). With the old
    # read-then-count design, parallel guesses passed the check together.
    sign_up()
    monkeypatch.setattr(rate_limits, "clock", lambda: 1_800_000_000.0)
    start = threading.Barrier(8)

    def guess(_: int) -> int:
        start.wait()
        return int(log_in(password="wrong guess", source_ip="198.51.100.99")[0])

    with ThreadPoolExecutor(8) as pool:  # 32 guesses: four rounds of 8 released at once
        statuses = list(pool.map(guess, range(32)))

    assert statuses.count(401) == settings.login_failures_per_account_from_address, "only that many password checks"
    assert statuses.count(429) == 32 - settings.login_failures_per_account_from_address


def test_successful_logins_do_not_count_against_the_limit(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    sign_up()
    monkeypatch.setattr(rate_limits, "clock", lambda: 1_800_000_000.0)
    for _ in range(settings.login_failures_per_account_from_address + 2):
        assert log_in()[0] == 200


def test_a_weak_stored_hash_is_upgraded_at_login(stack: Stack) -> None:
    from argon2 import PasswordHasher

    sign_up()
    weak = PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1).hash(PASSWORD)
    stack.dynamodb.update_item(
        TableName=stack.physical_id("UsersTable"),
        Key={"username_key": {"S": "alice"}},
        UpdateExpression="SET password_hash = :weak",
        ExpressionAttributeValues={":weak": {"S": weak}},
    )

    assert log_in()[0] == 200
    assert stack.items("UsersTable")[0]["password_hash"]["S"].startswith("$argon2id$v=19$m=19456,t=2,p=1$")


# --- refresh ---------------------------------------------------------------------------------------------------------


def test_refresh_rotates_the_pair(stack: Stack) -> None:
    sign_up()
    first = log_in()[1]

    status, second, _ = refresh(first["refresh_token"])

    assert status == 200
    assert second["refresh_token"] != first["refresh_token"]
    assert second["user_id"] == first["user_id"]
    assert authorizer_says(second["access_token"])["isAuthorized"] is True
    assert refresh(second["refresh_token"])[0] == 200


def test_reusing_a_spent_refresh_token_revokes_the_whole_family(stack: Stack) -> None:
    sign_up()
    first = log_in()[1]
    second = refresh(first["refresh_token"])[1]

    status, body, _ = refresh(first["refresh_token"])  # stolen copy of a spent token

    assert (status, body["status"]) == (401, 401)
    assert refresh(second["refresh_token"])[0] == 401, "the legitimate holder's newest token dies with its family"
    assert log_in()[0] == 200, "the player can still log in again"


def test_concurrent_uses_of_one_refresh_token_are_a_reuse(stack: Stack) -> None:
    sign_up()
    token = log_in()[1]["refresh_token"]
    start = threading.Barrier(6)

    def use() -> int:
        start.wait()
        return int(refresh(token)[0])

    with ThreadPoolExecutor(6) as pool:
        statuses = list(pool.map(lambda _: use(), range(6)))

    assert statuses.count(200) <= 1
    assert statuses.count(401) >= 5
    assert [item["revoked"]["BOOL"] for item in stack.items("TokenFamiliesTable")] == [True]


def test_sessions_are_independent_families(stack: Stack) -> None:
    sign_up()
    phone, laptop = log_in()[1], log_in()[1]
    assert refresh(phone["refresh_token"])[0] == 200
    assert refresh(phone["refresh_token"])[0] == 401  # reuse: the phone's family is revoked

    assert refresh(laptop["refresh_token"])[0] == 200


@pytest.mark.parametrize(("event_name", "status"), [("refresh_token_malformed", 401), ("refresh_token_unknown", 401)])
def test_unknown_refresh_tokens_are_401(stack: Stack, event_name: str, status: int) -> None:
    assert call(refresh_token, load_event(event_name))[0] == status


def test_a_refresh_body_without_a_token_is_400(stack: Stack) -> None:
    assert call(refresh_token, load_event("refresh_token_missing"))[0] == 400


def test_access_and_refresh_tokens_cannot_stand_in_for_each_other(stack: Stack) -> None:
    sign_up()
    pair = log_in()[1]

    assert refresh(pair["access_token"])[0] == 401
    assert authorizer_says(pair["refresh_token"]) == {"isAuthorized": False}


def test_an_expired_family_cannot_be_refreshed(stack: Stack) -> None:
    sign_up()
    pair = log_in()[1]
    stack.dynamodb.update_item(
        TableName=stack.physical_id("TokenFamiliesTable"),
        Key={"family_id": {"S": pair["refresh_token"].split(".")[0]}},
        UpdateExpression="SET expires_at = :past",
        ExpressionAttributeValues={":past": {"N": "1"}},
    )
    assert refresh(pair["refresh_token"])[0] == 401


# --- logout ----------------------------------------------------------------------------------------------------------


def test_logout_revokes_the_family(stack: Stack) -> None:
    account = sign_up()
    pair = log_in()[1]
    caller = {"user_id": account["user_id"], "username": "alice", "display_name": "alice"}

    status, body, _ = log_out(pair["refresh_token"], caller)

    assert (status, body) == (204, {})
    assert refresh(pair["refresh_token"])[0] == 401
    assert log_out(pair["refresh_token"], caller)[0] == 204, "logging out twice is fine"


def test_logout_with_something_that_is_not_a_live_refresh_token_is_401(stack: Stack) -> None:
    account = sign_up()
    pair = log_in()[1]
    caller = {"user_id": account["user_id"], "username": "alice", "display_name": "alice"}

    assert log_out(pair["access_token"], caller)[0] == 401
    assert refresh(pair["refresh_token"])[0] == 200, "the session is still alive: the client must not think otherwise"


def test_logout_cannot_end_another_players_session(stack: Stack) -> None:
    sign_up("alice")
    bob = sign_up("bob_42")
    alice_pair = log_in("alice")[1]

    status, body, _ = log_out(
        alice_pair["refresh_token"], {"user_id": bob["user_id"], "username": "bob_42", "display_name": "bob_42"}
    )

    assert (status, body["status"]) == (403, 403)
    assert refresh(alice_pair["refresh_token"])[0] == 200


@pytest.mark.parametrize(("event_name", "status"), [("logout_unknown_token", 401), ("logout_wrong_types", 400)])
def test_logout_sample_events(stack: Stack, event_name: str, status: int) -> None:
    assert call(logout, load_event(event_name))[0] == status


# --- the authorizer --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "event_name",
    [
        "authorize_garbage",
        "authorize_not_bearer",
        "authorize_alg_none",
        "authorize_forged_signature",
        "authorize_truncated",
    ],
)
def test_the_authorizer_denies_bad_tokens(stack: Stack, event_name: str) -> None:
    assert authorize.lambda_handler(load_event(event_name), FakeLambdaContext()) == {"isAuthorized": False}


def test_a_forged_signature_with_the_real_kid_is_denied(stack: Stack) -> None:
    import jwt

    account = sign_up()
    real = jwt.decode(log_in()[1]["access_token"], options={"verify_signature": False})
    forged = jwt.encode(
        {**real, "sub": "u-mallory"},
        "a guessed key of sufficient length 0123456789",
        algorithm="HS256",
        headers={"typ": "at+jwt", "kid": signing_keys.keys.current().kid},
    )

    assert account["user_id"] != "u-mallory"
    assert authorizer_says(forged) == {"isAuthorized": False}


# The real extension keeps a secret 300 s: a token signed with a just-rotated key (by a login function that started
# after the rotation) must verify at once on a warm authorizer, which looks the new kid up by its VersionId.
@pytest.mark.parametrize("stack", [0, 300], indirect=True, ids=["no-extension-cache", "extension-cache-300s"])
def test_a_token_signed_with_a_just_rotated_key_verifies_at_once(stack: Stack) -> None:
    account = sign_up()
    before = log_in()[1]["access_token"]
    assert authorizer_says(before)["isAuthorized"] is True  # the authorizer's keys are now warm

    new_key = stack.rotate_signing_key()
    identity = Identity(user_id=account["user_id"], username="alice", display_name="alice")
    after = issue_access_token(identity, new_key, issuer=os.environ["JWT_ISSUER"], audience=os.environ["JWT_AUDIENCE"])

    assert authorizer_says(after)["isAuthorized"] is True
    assert authorizer_says(before)["isAuthorized"] is True, "tokens of the previous key stay valid"


def test_logins_after_a_rotation_sign_with_the_new_key(stack: Stack) -> None:
    sign_up()
    before = log_in()[1]["access_token"]

    new_key = stack.rotate_signing_key()
    signing_keys.keys = signing_keys.SigningKeys()  # a login function that starts after the rotation
    after = log_in()[1]["access_token"]

    assert (_kid(before), _kid(after)) == (_kid(before), new_key.kid)
    assert _kid(before) != new_key.kid
    assert authorizer_says(after)["isAuthorized"] is True


def _kid(token: str) -> str:
    import jwt

    return str(jwt.get_unverified_header(token)["kid"])


# --- what is logged --------------------------------------------------------------------------------------------------


def test_no_password_or_token_is_ever_logged(stack: Stack, caplog: pytest.LogCaptureFixture) -> None:
    # Every record, formatted as the functions print it to CloudWatch (JSON with all extra keys).
    caplog.handler.setFormatter(login.logger.registered_formatter)
    account = sign_up()
    caller = {"user_id": account["user_id"], "username": "alice", "display_name": "alice"}
    pair = log_in()[1]
    log_in(password="wrong horse battery")
    rotated = refresh(pair["refresh_token"])[1]
    refresh(pair["refresh_token"])
    authorizer_says(rotated["access_token"])
    authorizer_says(rotated["access_token"] + "x")
    log_out(rotated["refresh_token"], caller)
    call(register, load_event("register_wrong_types"))

    output = caplog.text
    assert "logged in" in output, "the handlers' logs were captured"
    assert '"function_request_id"' in output, "in the JSON form CloudWatch gets"
    secrets = [PASSWORD, "wrong horse battery", pair["access_token"], rotated["access_token"]]
    secrets += [token.split(".")[1] for token in (pair["refresh_token"], rotated["refresh_token"])]
    for secret in secrets:
        assert secret not in output
    assert "$argon2" not in output


# --- sessions: change the password, log out everywhere ------------------------------------------------------------


def change_password(caller: dict[str, str], current: str, new: str, source_ip: str = "203.0.113.10") -> Any:
    body = {"current_password": current, "new_password": new}
    return call(
        change_password_handler, with_body("change_password_wrong_current", body, caller=caller, source_ip=source_ip)
    )


def caller_of(account: dict[str, Any]) -> dict[str, str]:
    return {"user_id": account["user_id"], "username": account["username"], "display_name": account["display_name"]}


def test_logging_out_everywhere_ends_every_session_and_a_new_login_starts_a_live_one(stack: Stack) -> None:
    account = sign_up()
    phone, laptop = log_in()[1], log_in()[1]
    event = load_event("logout_everywhere")
    event["requestContext"]["authorizer"] = {"lambda": caller_of(account)}

    status, body, _ = call(logout_everywhere, event)

    assert (status, body) == (204, {})
    assert refresh(phone["refresh_token"])[0] == 401
    assert refresh(laptop["refresh_token"])[0] == 401
    tablet = log_in()[1]  # a login after it is a new session
    assert refresh(tablet["refresh_token"])[0] == 200
    # An access token already issued runs out on its own (see the window test below).
    assert authorizer_says(phone["access_token"])["isAuthorized"] is True


def test_a_password_change_needs_the_current_password_and_ends_every_session(stack: Stack) -> None:
    account = sign_up()
    session = log_in()[1]

    wrong = change_password(caller_of(account), "not the password", "a new correct horse")
    right = change_password(caller_of(account), PASSWORD, "a new correct horse")

    assert wrong[0] == 403
    assert right[0] == 204
    assert refresh(session["refresh_token"])[0] == 401
    assert log_in()[0] == 401  # the old password no longer opens the account
    assert log_in(password="a new correct horse")[0] == 200


def test_a_refused_password_change_changes_nothing(stack: Stack) -> None:
    account = sign_up()
    session = log_in()[1]

    assert change_password(caller_of(account), "not the password", "a new correct horse")[0] == 403
    assert change_password(caller_of(account), PASSWORD, "short")[0] == 400

    assert log_in()[0] == 200
    assert refresh(session["refresh_token"])[0] == 200


def test_guessing_the_current_password_is_throttled_like_logins(stack: Stack) -> None:
    account = sign_up()

    with limits(login_failures_per_account_from_address=3):
        answers = [change_password(caller_of(account), f"guess {n}", "a new correct horse")[0] for n in range(4)]

    assert answers == [403, 403, 403, 429]
    assert change_password(caller_of(account), PASSWORD, "a new correct horse", source_ip="198.51.100.7")[0] == 204


def test_an_access_token_is_honoured_for_its_lifetime_and_leeway_after_a_logout_and_no_longer(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    account = sign_up()
    call(logout_everywhere, with_body("logout_everywhere", "", caller=caller_of(account)))
    identity = Identity(account["user_id"], account["username"], account["display_name"])
    key, now = signing_keys.keys.current(), time.time()

    def issued_ago(seconds: float) -> str:
        with monkeypatch.context() as patch:
            patch.setattr(tokens.time, "time", lambda: now - seconds)
            return issue_access_token(
                identity, key, issuer=os.environ["JWT_ISSUER"], audience=os.environ["JWT_AUDIENCE"]
            )

    lifetime_and_leeway = tokens.ACCESS_TOKEN_SECONDS + tokens.LEEWAY_SECONDS
    assert authorizer_says(issued_ago(lifetime_and_leeway - 5))["isAuthorized"] is True  # a logout does not end it
    assert authorizer_says(issued_ago(lifetime_and_leeway + 5)) == {"isAuthorized": False}
    # API Gateway may serve a cached "allow" for ReauthorizeEvery seconds more: the documented window.
    assert auth.ACCESS_TOKEN_WINDOW == lifetime_and_leeway + 240 == 870


# --- security events --------------------------------------------------------------------------------------------------


@pytest.fixture
def watched(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> "Watched":
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "leaderboard")  # as template.yaml's Globals set it
    return Watched(capsys, caplog)


class Watched:
    """What the functions logged as security events, and the metrics they printed (embedded metric format)."""

    def __init__(self, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> None:
        self.capsys, self.caplog = capsys, caplog

    def clear(self) -> None:
        self.capsys.readouterr()
        self.caplog.clear()

    def events(self) -> list[tuple[str, str, str]]:
        records = [r for r in self.caplog.records if hasattr(r, "security_event")]
        return [(r.security_event, r.user, r.address) for r in records]

    def counted(self) -> list[str]:
        """The metrics counted, by name, in the template's alarms' namespace and dimension."""
        names = []
        for line in self.capsys.readouterr().out.splitlines():
            with contextlib.suppress(ValueError):
                emf = json.loads(line)
                for directive in emf.get("_aws", {}).get("CloudWatchMetrics", []):
                    if directive["Namespace"] == "Leaderboard" and emf.get("service") == "leaderboard":
                        names += [metric["Name"] for metric in directive["Metrics"]]
        return names

    def logged_text(self) -> str:
        return "\n".join(record.getMessage() + repr(record.__dict__) for record in self.caplog.records)


def test_failed_logins_and_throttling_are_logged_with_the_account_and_address_and_counted(
    stack: Stack, watched: Watched
) -> None:
    sign_up()
    watched.clear()

    with limits(login_failures_per_account_from_address=2):
        statuses = [log_in(password=f"guess {n}", source_ip="198.51.100.9")[0] for n in range(3)]

    assert statuses == [401, 401, 429]
    assert watched.events() == [
        ("FailedLogin", "alice", "198.51.100.9"),
        ("FailedLogin", "alice", "198.51.100.9"),
        ("LoginThrottled", "alice", "198.51.100.9"),
    ]
    assert watched.counted() == ["FailedLogin", "FailedLogin", "LoginThrottled"]
    assert "guess" not in watched.logged_text()  # never a password


def test_refresh_token_reuse_is_logged_with_the_player_and_address_and_counted(stack: Stack, watched: Watched) -> None:
    account = sign_up()
    spent = log_in()[1]["refresh_token"]
    assert refresh(spent)[0] == 200
    watched.clear()

    assert refresh(spent)[0] == 401

    assert watched.events() == [("RefreshTokenReuse", account["user_id"], "203.0.113.10")]
    assert watched.counted() == ["RefreshTokenReuse"]
    assert spent.split(".")[1] not in watched.logged_text()  # never a token, nor its secret


def test_each_security_event_has_an_alarm_in_the_template() -> None:
    template = Template(PROJECT_ROOT / "template.yaml")
    alarms = template.resources_of_type("AWS::CloudWatch::Alarm").values()
    watched = {
        alarm["Properties"]["MetricName"]
        for alarm in alarms
        if alarm["Properties"].get("Namespace") == security_events_module.NAMESPACE  # metric-math alarms have none
        and alarm["Properties"]["Dimensions"] == [{"Name": "service", "Value": "leaderboard"}]
    }

    assert watched == {str(event) for event in security_events_module.SecurityEvent}
