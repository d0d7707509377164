"""The authentication API over HTTP, against the local runtime or a deployed stack (API_URL)."""

import re
import uuid
from typing import Any

import jwt
import pytest
import requests

from tests.e2e.hostile import assert_problem

pytestmark = pytest.mark.e2e
PASSWORD = "correct horse battery"


class Api:
    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.http = requests.Session()

    def post(self, path: str, body: Any = None, token: str | None = None, raw: str | None = None) -> requests.Response:
        headers = {"Content-Type": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        data = raw if raw is not None else None
        return self.http.post(
            f"{self.base_url}{path}", json=body if raw is None else None, data=data, headers=headers, timeout=30
        )


@pytest.fixture(scope="module")
def api(api_url: str) -> Api:
    return Api(api_url)


def new_username() -> str:
    return f"e2e_{uuid.uuid4().hex[:12]}"


def registered(api: Api) -> tuple[str, str]:
    username = new_username()
    response = api.post("/v1/users", {"username": username, "password": PASSWORD})
    assert response.status_code == 201, response.text
    return username, response.json()["user_id"]


def logged_in(api: Api, username: str) -> dict[str, Any]:
    response = api.post("/v1/login", {"username": username, "password": PASSWORD})
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_register_login_refresh_logout(api: Api) -> None:
    username, user_id = registered(api)

    pair = logged_in(api, username)
    assert (pair["token_type"], pair["user_id"], pair["expires_in"]) == ("Bearer", user_id, 600)

    refreshed = api.post("/v1/token/refresh", {"refresh_token": pair["refresh_token"]})
    assert refreshed.status_code == 200
    newer = refreshed.json()
    assert newer["refresh_token"] != pair["refresh_token"]

    not_a_refresh_token = api.post("/v1/logout", {"refresh_token": newer["access_token"]}, token=newer["access_token"])
    assert_problem(not_a_refresh_token, 401)
    logout = api.post("/v1/logout", {"refresh_token": newer["refresh_token"]}, token=newer["access_token"])
    assert logout.status_code == 204
    assert_problem(api.post("/v1/token/refresh", {"refresh_token": newer["refresh_token"]}), 401)


def test_a_taken_username_is_409(api: Api) -> None:
    username, _ = registered(api)
    body = assert_problem(api.post("/v1/users", {"username": username.upper(), "password": PASSWORD}), 409)
    assert body["detail"] == "This username is taken; choose another."


def test_without_a_display_name_the_boards_get_a_generated_one_never_the_username(api: Api) -> None:
    username = new_username()

    response = api.post("/v1/users", {"username": username, "password": PASSWORD})

    assert response.status_code == 201, response.text
    shown = response.json()["display_name"]
    assert re.fullmatch(r"Player [1-9]\d{4,}", shown)
    # The name that travels with the player's scores to the boards is the access token's
    token = logged_in(api, username)["access_token"]
    assert jwt.decode(token, options={"verify_signature": False})["name"] == shown != username


def test_a_display_name_that_looks_like_one_held_is_409_and_registers_nobody(api: Api) -> None:
    # Given a player holding "Ada <tag>" (a tag of this run's own: a deployed stack keeps its names)
    tag = uuid.uuid4().hex[:8]
    held = api.post("/v1/users", {"username": new_username(), "password": PASSWORD, "display_name": f"Ada {tag}"})
    assert held.status_code == 201, held.text
    username = new_username()

    # When another asks for the same name with a Cyrillic capital A, then in capitals
    for lookalike in (f"\u0410da {tag}", f"ADA {tag.upper()}"):
        body = {"username": username, "password": PASSWORD, "display_name": lookalike}
        refused = assert_problem(api.post("/v1/users", body), 409)

        # Then 409 saying so, and nothing was registered: the username is still free
        assert refused["detail"].startswith("This display name is taken")
    assert_problem(api.post("/v1/login", {"username": username, "password": PASSWORD}), 401)
    free = api.post("/v1/users", {"username": username, "password": PASSWORD, "display_name": f"Ada L {tag}"})
    assert free.status_code == 201, free.text


@pytest.mark.parametrize(
    ("display_name", "rule"),
    [
        ("\u3164", "is invisible"),  # HANGUL FILLER: renders as nothing
        ("Ada\u200b", "is an invisible formatting character"),
        ("\u2800", "is a symbol"),  # BRAILLE PATTERN BLANK
        ("- . -", "must have at least one letter or number"),
    ],
)
def test_an_invisible_or_blank_display_name_is_400_and_registers_nobody(api: Api, display_name: str, rule: str) -> None:
    username = new_username()

    refused = api.post("/v1/users", {"username": username, "password": PASSWORD, "display_name": display_name})

    body = assert_problem(refused, 400)
    assert body["detail"].startswith("The request body is invalid: display_name: ")
    assert rule in body["detail"]
    assert_problem(api.post("/v1/login", {"username": username, "password": PASSWORD}), 401)


@pytest.mark.parametrize(
    ("path", "raw", "status"),
    [
        ("/v1/users", '{"username": "x", "password": ', 400),
        ("/v1/users", "[]", 400),
        ("/v1/users", '{"username": 1, "password": true}', 400),
        ("/v1/users", '{"username": "valid_name", "password": "correct horse battery", "admin": true}', 400),
        ("/v1/users", '{"username": "valid_name", "password": "' + "p" * 129 + '"}', 400),
        ("/v1/users", '{"username": "valid_name", "password": "' + "p" * 5000 + '"}', 413),
        ("/v1/login", '{"username": "valid_name"}', 400),
        ("/v1/login", '{"username": "valid_name", "password": NaN}', 400),
        ("/v1/token/refresh", '{"refresh_token": null}', 400),
        ("/v1/token/refresh", '{"refresh_token": "forged.token"}', 401),
    ],
)
def test_bad_input_is_a_clear_4xx(api: Api, path: str, raw: str, status: int) -> None:
    body = assert_problem(api.post(path, raw=raw), status)
    assert "pydantic" not in str(body).lower()


def test_a_key_given_twice_is_400_and_registers_nobody(api_url: str) -> None:
    username = f"e2e_{uuid.uuid4().hex[:12]}"
    body = f'{{"username": "{username}", "password": "x", "password": "correct horse battery"}}'

    response = requests.post(f"{api_url}/v1/users", data=body, headers={"Content-Type": "application/json"}, timeout=30)

    assert response.status_code == 400
    assert "more than once" in response.json()["detail"]
    login = requests.post(
        f"{api_url}/v1/login", json={"username": username, "password": "correct horse battery"}, timeout=30
    )
    assert login.status_code == 401


def test_logging_out_everywhere_ends_every_refresh_token_but_not_a_new_login(api_url: str) -> None:
    username = f"e2e_{uuid.uuid4().hex[:12]}"
    credentials = {"username": username, "password": "correct horse battery"}
    assert requests.post(f"{api_url}/v1/users", json=credentials, timeout=30).status_code == 201
    phone = requests.post(f"{api_url}/v1/login", json=credentials, timeout=30).json()
    laptop = requests.post(f"{api_url}/v1/login", json=credentials, timeout=30).json()

    ended = requests.post(
        f"{api_url}/v1/logout/everywhere", headers={"Authorization": f"Bearer {phone['access_token']}"}, timeout=30
    )

    assert ended.status_code == 204
    for session in (phone, laptop):
        again = requests.post(
            f"{api_url}/v1/token/refresh", json={"refresh_token": session["refresh_token"]}, timeout=30
        )
        assert again.status_code == 401
    fresh = requests.post(f"{api_url}/v1/login", json=credentials, timeout=30).json()
    renewed = requests.post(f"{api_url}/v1/token/refresh", json={"refresh_token": fresh["refresh_token"]}, timeout=30)
    assert renewed.status_code == 200


def test_changing_the_password_needs_the_current_one_and_ends_every_session(api_url: str) -> None:
    username = f"e2e_{uuid.uuid4().hex[:12]}"
    credentials = {"username": username, "password": "correct horse battery"}
    assert requests.post(f"{api_url}/v1/users", json=credentials, timeout=30).status_code == 201
    session = requests.post(f"{api_url}/v1/login", json=credentials, timeout=30).json()
    bearer = {"Authorization": f"Bearer {session['access_token']}"}

    def change(current: str) -> int:
        body = {"current_password": current, "new_password": "a brand new horse"}
        return requests.post(f"{api_url}/v1/password", json=body, headers=bearer, timeout=30).status_code

    assert change("not the password") == 403
    assert requests.post(f"{api_url}/v1/login", json=credentials, timeout=30).status_code == 200  # nothing changed
    assert change("correct horse battery") == 204
    assert requests.post(f"{api_url}/v1/login", json=credentials, timeout=30).status_code == 401
    new = {"username": username, "password": "a brand new horse"}
    assert requests.post(f"{api_url}/v1/login", json=new, timeout=30).status_code == 200
    old = requests.post(f"{api_url}/v1/token/refresh", json={"refresh_token": session["refresh_token"]}, timeout=30)
    assert old.status_code == 401
    unauthenticated = requests.post(f"{api_url}/v1/password", json={}, timeout=30)
    assert unauthenticated.status_code == 401
