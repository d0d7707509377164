"""Rate limits per client, in-process against moto and the real Redis: registrations per address, the device token
that spares the owner the account-wide login limit (and its own limit), and the public reads per address. Every
refusal is 429 with Retry-After, changes nothing, and is logged and counted as a security event."""

import json
import os
import time
from typing import Any
from unittest import mock

import pytest

from functions.login import login, register
from functions.scores import get_board_scores, get_board_standing, get_standing, get_top10
from leaderboard import rate_limits, read_limits, signing_keys, tokens
from leaderboard.config import settings
from tests.conftest import FakeLambdaContext, load_event
from tests.integration.conftest import Game, Stack, limits
from tests.integration.test_auth import PASSWORD, Watched, call, log_in, sign_up, watched, with_body

__all__ = ["watched"]  # the fixture, shared with test_auth

MOMENT = 1_800_000_000.0  # a quarter-hour and an hour start here: no test crosses a window unless it means to


@pytest.fixture
def frozen_clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The limiter's clock, held at MOMENT until a test moves it (`frozen_clock[0] += ...`)."""
    now = [MOMENT]
    monkeypatch.setattr(rate_limits, "clock", lambda: now[0])
    return now


def register_from(address: str, username: str) -> tuple[int, dict[str, Any], dict[str, str]]:
    body = {"username": username, "password": PASSWORD}
    return call(register, with_body("register_ok", body, source_ip=address))


def usernames(stack: Stack) -> set[str]:
    return {item["username"]["S"] for item in stack.items("UsersTable")}


# --- registrations per address ---------------------------------------------------------------------------------------


def test_registrations_past_the_addresss_limit_get_429_and_create_no_account(
    stack: Stack, frozen_clock: list[float]
) -> None:
    with limits(registrations_per_address_per_hour=3):
        created = [register_from("198.51.100.20", f"player{n}")[0] for n in range(3)]
        status, body, headers = register_from("198.51.100.20", "one_too_many")

        assert created == [201, 201, 201]
        assert (status, body["status"], body["type"]) == (429, 429, "urn:leaderboard:problem:too-many-requests")
        assert int(headers["Retry-After"]) == 3600  # the hour's window started at MOMENT
        assert usernames(stack) == {"player0", "player1", "player2"}, "no account was created"
        assert register_from("198.51.100.21", "next_door")[0] == 201, "another address is not held up"

        frozen_clock[0] += int(headers["Retry-After"])
        assert register_from("198.51.100.20", "one_too_many")[0] == 201, "the next window is open again"


def test_an_ipv6_client_registers_within_its_slash_56s_limit(stack: Stack, frozen_clock: list[float]) -> None:
    with limits(registrations_per_address_per_hour=2):
        assert register_from("2001:db8:7:1::1", "first")[0] == 201
        assert register_from("2001:db8:7:2::1", "second")[0] == 201  # another /64, the same /56

        assert register_from("2001:db8:7:ff::1", "third")[0] == 429
        assert register_from("2001:db8:7:100::1", "third")[0] == 201  # the next /56


def test_a_taken_username_counts_as_an_attempt_but_a_malformed_body_does_not(
    stack: Stack, frozen_clock: list[float]
) -> None:
    sign_up("alice")  # from the sample event's address, 203.0.113.10
    with limits(registrations_per_address_per_hour=3):
        assert [register_from("198.51.100.30", "alice")[0] for _ in range(2)] == [409, 409]  # probing names costs
        for _ in range(5):
            bad = with_body("register_ok", {"username": "x", "password": PASSWORD}, source_ip="198.51.100.30")
            assert call(register, bad)[0] == 400

        assert register_from("198.51.100.30", "bob")[0] == 201  # the third attempt
        assert register_from("198.51.100.30", "carol")[0] == 429


def test_a_refused_registration_is_logged_with_the_address_and_counted(
    stack: Stack, frozen_clock: list[float], watched: Watched
) -> None:
    with limits(registrations_per_address_per_hour=1):
        assert register_from("198.51.100.40", "mallory")[0] == 201
        watched.clear()

        assert register_from("198.51.100.40", "mallory2")[0] == 429

    assert watched.events() == [("RegistrationThrottled", "", "198.51.100.40")]
    assert watched.counted() == ["RegistrationThrottled"]
    assert PASSWORD not in watched.logged_text()


# --- logins: the device token -------------------------------------------------------------------------------------


def log_in_with(device_token: str | None, password: str = PASSWORD, address: str = "192.0.2.1") -> Any:
    body = {"username": "alice", "password": password}
    if device_token is not None:
        body["device_token"] = device_token
    return call(login, with_body("login_ok", body, source_ip=address))


def exhaust_the_account_wide_limit() -> None:
    """A distributed attack: wrong passwords for alice from as many addresses as it takes."""
    with limits(login_failures_per_account=4, login_failures_per_account_from_address=2):
        for attempt in range(4):
            assert log_in(password="wrong guess", source_ip=f"10.9.0.{attempt}")[0] == 401


def test_a_login_answers_a_device_token_and_a_client_without_one_works_as_before(
    stack: Stack, frozen_clock: list[float]
) -> None:
    sign_up()

    status, body, _ = log_in()

    assert status == 200
    assert body["device_token"].count(".") == 2
    assert body["device_token"] not in (body["access_token"], body["refresh_token"])


def test_the_owners_device_token_spares_them_the_account_wide_limit_an_attack_used_up(
    stack: Stack, frozen_clock: list[float]
) -> None:
    # Given the owner logged in on their device before, then an attack used up the account-wide limit
    sign_up()
    device_token = log_in(source_ip="192.0.2.1")[1]["device_token"]
    exhaust_the_account_wide_limit()

    with limits(login_failures_per_account=4, login_failures_per_account_from_address=2):
        # Then a client without a device token is refused, and issued nothing
        refused = log_in_with(None)
        assert (refused[0], int(refused[2]["Retry-After"])) == (429, 900)
        assert "access_token" not in refused[1]
        # ... and the owner, on their device, gets in (and a device token for next time)
        status, body, _ = log_in_with(device_token)
        assert status == 200
        assert log_in_with(body["device_token"])[0] == 200


def test_a_device_token_of_another_account_or_forged_or_expired_spares_nothing(
    stack: Stack, frozen_clock: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    sign_up()
    sign_up("bob")
    bobs = log_in("bob", source_ip="192.0.2.9")[1]["device_token"]
    alices = log_in(source_ip="192.0.2.1")[1]["device_token"]
    header, payload, signature = alices.split(".")
    forged = f"{header}.{payload}.{signature[:-4]}AAAA"
    long_ago = time.time() - tokens.DEVICE_TOKEN_SECONDS - 3600  # longer ago than a device token lives
    with monkeypatch.context() as patch:
        patch.setattr(time, "time", lambda: long_ago)
        expired = tokens.issue_device_token(
            "u-alice", "alice", signing_keys.keys.current(), os.environ["JWT_ISSUER"], os.environ["JWT_AUDIENCE"]
        )
    exhaust_the_account_wide_limit()

    with limits(login_failures_per_account=4, login_failures_per_account_from_address=2):
        for not_alices in (bobs, forged, expired, "not a token at all"):
            assert log_in_with(not_alices)[0] == 429
        assert log_in_with(alices)[0] == 200, "the real one still works"


def test_a_stolen_device_token_buys_only_the_devices_own_few_guesses(stack: Stack, frozen_clock: list[float]) -> None:
    sign_up()
    stolen = log_in()[1]["device_token"]

    with limits(login_failures_per_device=3):
        # From fresh addresses each time, so no address limit is reached first
        guesses = [log_in_with(stolen, "wrong guess", f"10.8.0.{n}")[0] for n in range(5)]
        assert guesses == [401, 401, 401, 429, 429]
        assert log_in_with(None)[0] == 200, "the account-wide limit was not touched: the owner gets in elsewhere"


def test_a_malformed_device_token_field_is_400(stack: Stack, frozen_clock: list[float]) -> None:
    sign_up()
    event = with_body("login_ok", {"username": "alice", "password": PASSWORD, "device_token": 12})

    status, body, _ = call(login, event)

    assert status == 400
    assert body["errors"] == [{"field": "device_token", "detail": "has the wrong type; expected a device token string"}]
    assert stack.items("TokenFamiliesTable") == []


def test_a_login_refused_by_the_device_limit_is_logged_without_the_token(
    stack: Stack, frozen_clock: list[float], watched: Watched
) -> None:
    sign_up()
    stolen = log_in()[1]["device_token"]
    watched.clear()

    with limits(login_failures_per_device=1):
        assert [log_in_with(stolen, "wrong guess", "10.8.1.1")[0] for _ in range(2)] == [401, 429]

    assert watched.events() == [("FailedLogin", "alice", "10.8.1.1"), ("LoginThrottled", "alice", "10.8.1.1")]
    throttled = [
        record for record in watched.caplog.records if getattr(record, "security_event", "") == "LoginThrottled"
    ]
    assert throttled[0].limit == "login-device"
    assert stolen not in watched.logged_text()
    assert stolen.split(".")[2] not in watched.logged_text()


# --- reads per address, in Redis -------------------------------------------------------------------------------------

READS = [
    (get_top10, "get_top10"),
    (get_standing, "get_standing"),
    (get_board_scores, "get_board_scores"),
    (get_board_standing, "get_board_standing"),
]


@pytest.fixture
def real_clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The limiter's clock held at the real moment (Redis expires the counters by its own clock), at least 5 s before
    the minute's window ends."""
    now = time.time()
    if now % 60 > 55:
        time.sleep(60 - now % 60)
        now = time.time()
    held = [now]
    monkeypatch.setattr(rate_limits, "clock", lambda: held[0])
    return held


def read(handler: Any, event_name: str, address: str = "198.51.100.50") -> tuple[int, dict[str, str]]:
    event = load_event(event_name)
    event["requestContext"]["http"]["sourceIp"] = address
    response = handler.lambda_handler(event, FakeLambdaContext())
    return response["statusCode"], response["headers"]


@pytest.mark.parametrize(("handler", "event_name"), READS, ids=[name for _, name in READS])
def test_reads_past_the_addresss_limit_get_429_with_retry_after(
    game: Game, real_clock: list[float], handler: Any, event_name: str
) -> None:
    with limits(reads_per_address_per_minute=3):
        statuses = [read(handler, event_name)[0] for _ in range(3)]
        status, headers = read(handler, event_name)

        assert 429 not in statuses
        assert status == 429
        assert int(headers["Retry-After"]) == 60 - int(real_clock[0] % 60)
        assert read(handler, event_name, address="198.51.100.51")[0] != 429, "another address reads on"

        real_clock[0] += int(headers["Retry-After"])
        assert read(handler, event_name)[0] != 429, "the next minute is open again"


def test_every_public_read_counts_against_one_limit_per_address(game: Game, real_clock: list[float]) -> None:
    with limits(reads_per_address_per_minute=4):
        statuses = [read(handler, event_name)[0] for handler, event_name in READS]
        assert 429 not in statuses
        assert [read(handler, event_name)[0] for handler, event_name in READS] == [429] * 4


def test_an_ipv6_client_reads_within_its_slash_56s_limit(game: Game, real_clock: list[float]) -> None:
    with limits(reads_per_address_per_minute=2):
        assert read(get_top10, "get_top10", "2001:db8:9:1::1")[0] == 200
        assert read(get_top10, "get_top10", "2001:db8:9:2::1")[0] == 200

        assert read(get_top10, "get_top10", "2001:db8:9:ff::1")[0] == 429
        assert read(get_top10, "get_top10", "2001:db8:9:100::1")[0] == 200


def test_an_address_going_past_its_read_limit_is_logged_and_counted_once_a_window(
    game: Game, real_clock: list[float], watched: Watched
) -> None:
    with limits(reads_per_address_per_minute=1):
        read(get_top10, "get_top10")
        watched.clear()

        assert [read(get_top10, "get_top10")[0] for _ in range(5)] == [429] * 5

    assert watched.events() == [("ReadsThrottled", "", "198.51.100.50")]
    assert watched.counted() == ["ReadsThrottled"]


def test_a_read_counter_is_one_key_of_its_own_under_the_prefix_expiring_after_its_window(
    game: Game, real_clock: list[float]
) -> None:
    read(get_top10, "get_top10", "2001:db8:9:1::1")

    client = game.redis
    window = int(real_clock[0] // 60)
    [key] = client.keys(f"{settings.redis_key_prefix}:{{rate:reads:*")
    assert key.decode() == f"{settings.redis_key_prefix}:{{rate:reads:2001:db8:9::/56}}:{window}"
    assert client.get(key) == b"1"
    assert 60_000 < client.pttl(key) <= 120_000  # the window's end, plus a window to spare


def test_reads_are_let_through_uncounted_when_redis_does_not_answer(game: Game, real_clock: list[float]) -> None:
    with limits(reads_per_address_per_minute=1), mock.patch.dict(os.environ, {"REDIS_URL": "redis://127.0.0.1:1/0"}):
        for _ in range(3):
            read_limits.limit_reads("198.51.100.60")  # no 429: the limit is never why a read fails


def test_the_refused_reads_answer_problem_details(game: Game, real_clock: list[float]) -> None:
    with limits(reads_per_address_per_minute=1):
        read(get_top10, "get_top10")
        event = load_event("get_top10")
        event["requestContext"]["http"]["sourceIp"] = "198.51.100.50"
        response = get_top10.lambda_handler(event, FakeLambdaContext())

    assert response["headers"]["Content-Type"] == "application/problem+json"
    assert json.loads(response["body"])["status"] == 429
