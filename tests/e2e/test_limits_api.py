"""Rate limits per client over HTTP: a registration flood, the device token that spares the owner while an attacker
is throttled, and a read flood.

These run on a local runtime of their own, started with small limits (`--parameter-overrides`, as `sam deploy` takes
template parameters), so a flood takes a handful of requests and the rest of the suite, whose runtime registers many
players from 127.0.0.1, is untouched. Against a deployed stack (API_URL) they are skipped: they would need limits the
test sets, and a flood from the runner's address would hold it up for an hour. The device token's contract (a login
answers one; sending it back works) is checked on the suite's own stack, deployed or local.
"""

import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests

from tests.e2e.conftest import STATE_DIR, local_runtime

pytestmark = pytest.mark.e2e
PASSWORD = "correct horse battery"

LIMITS = {
    "RegistrationsPerAddressPerHour": 3,
    "LoginFailuresPerAccount": 3,
    "LoginFailuresPerAccountFromAddress": 6,  # above the account's, so one address can reach the account-wide limit
    "LoginFailuresPerAddress": 50,
    "LoginFailuresPerDevice": 2,
    "ReadsPerAddressPerMinute": 5,
}


@dataclass(frozen=True)
class LimitedStack:
    url: str
    owner: str  # a player registered as the stack started, before any flood


def post(url: str, body: dict[str, Any]) -> requests.Response:
    return requests.post(url, json=body, timeout=30)


def new_username() -> str:
    return f"e2e_{uuid.uuid4().hex[:12]}"


def wait_for_room(window_seconds: int, needed_seconds: float) -> None:
    """Start a scenario with at least `needed_seconds` left in the limits' current window (windows are aligned on the
    epoch), so that no count is reset half-way."""
    left = window_seconds - time.time() % window_seconds
    if left < needed_seconds:
        time.sleep(left + 0.1)


@pytest.fixture(scope="module")
def limited() -> Iterator[LimitedStack]:
    if os.environ.get("API_URL"):
        pytest.skip("the limits are set on a local runtime of the tests' own; API_URL names a deployed stack")
    # Without REDIS_URL it starts a Redis of its own: on a shared one it would clear the suite's keys at start.
    environment = {name: value for name, value in os.environ.items() if name != "REDIS_URL"}
    overrides = [f"{name}={value}" for name, value in LIMITS.items()]
    with local_runtime(STATE_DIR.parent / "e2e-limits", environment, overrides) as api_url:
        wait_for_room(3600, 30)
        owner = new_username()
        assert post(f"{api_url}/v1/users", {"username": owner, "password": PASSWORD}).status_code == 201
        yield LimitedStack(api_url, owner)


def assert_throttled(response: requests.Response, window_seconds: int) -> None:
    assert response.status_code == 429, response.text
    assert response.headers["Content-Type"].startswith("application/problem+json")
    assert response.json()["status"] == 429
    assert 0 < int(response.headers["Retry-After"]) <= window_seconds


def test_a_registration_flood_from_one_address_is_refused_and_creates_no_account(limited: LimitedStack) -> None:
    # Given the owner's registration took one of the address's 3 an hour; when one address keeps registering
    usernames = [new_username() for _ in range(4)]
    answers = [post(f"{limited.url}/v1/users", {"username": name, "password": PASSWORD}) for name in usernames]

    # Then the 2 left are created and the rest refused until the hour is over
    assert [answer.status_code for answer in answers] == [201, 201, 429, 429]
    assert_throttled(answers[2], 3600)
    # ... and a refused one has no account
    refused_login = post(f"{limited.url}/v1/login", {"username": usernames[2], "password": PASSWORD})
    assert refused_login.status_code == 401


def test_the_owners_device_token_spares_them_while_an_attacker_is_throttled(limited: LimitedStack) -> None:
    wait_for_room(900, 20)
    login_url = f"{limited.url}/v1/login"
    # Given the owner logged in on their device before
    device_token = post(login_url, {"username": limited.owner, "password": PASSWORD}).json()["device_token"]

    # When an attacker uses up the account's failures
    guesses = [post(login_url, {"username": limited.owner, "password": f"guess {n}"}) for n in range(4)]

    # Then the attacker is refused, and so is a client without a device token, and neither gets a token
    assert [guess.status_code for guess in guesses] == [401, 401, 401, 429]
    assert_throttled(guesses[3], 900)
    without_device = post(login_url, {"username": limited.owner, "password": PASSWORD})
    assert_throttled(without_device, 900)
    assert "access_token" not in without_device.json()
    # ... while the owner, on their device, gets in (with a device token for next time)
    owner = post(login_url, {"username": limited.owner, "password": PASSWORD, "device_token": device_token})
    assert owner.status_code == 200, owner.text
    renewed = owner.json()["device_token"]

    # And a stolen device token buys only the device's own 2 guesses
    stolen = [
        post(login_url, {"username": limited.owner, "password": f"stolen {n}", "device_token": device_token})
        for n in range(3)
    ]
    assert [guess.status_code for guess in stolen] == [401, 401, 429]
    again = post(login_url, {"username": limited.owner, "password": PASSWORD, "device_token": renewed})
    assert again.status_code == 200, again.text


def test_a_read_flood_from_one_address_is_refused_with_retry_after(limited: LimitedStack) -> None:
    wait_for_room(60, 5)
    answers = [requests.get(f"{limited.url}/v1/scores", timeout=30) for _ in range(7)]

    assert [answer.status_code for answer in answers] == [200] * 5 + [429] * 2
    assert_throttled(answers[5], 60)
    # The boards' definitions are not limited: refusing them would cost as much as answering
    assert requests.get(f"{limited.url}/v1/boards", timeout=30).status_code == 200


def test_a_login_answers_a_device_token_that_a_later_login_may_send_back(api_url: str) -> None:
    username = new_username()
    assert post(f"{api_url}/v1/users", {"username": username, "password": PASSWORD}).status_code == 201

    first = post(f"{api_url}/v1/login", {"username": username, "password": PASSWORD})
    device_token = first.json()["device_token"]
    second = post(f"{api_url}/v1/login", {"username": username, "password": PASSWORD, "device_token": device_token})

    assert second.status_code == 200, second.text
    session = second.json()
    assert set(session) == {"access_token", "refresh_token", "token_type", "expires_in", "user_id", "device_token"}
    assert session["device_token"] != device_token
