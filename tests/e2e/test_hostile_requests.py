"""Hostile requests, mostly with a valid token, against the local runtime or a deployed stack: broken object-level
authorization on every route and channel that names an id (and ids no one has), mass assignment, every numeric edge
of a score, oversize bodies, bodies not declared as JSON or readable two ways, and methods no route has. Each refusal
is checked for its exact answer and for changing nothing: the player's standing, their open action, their session,
their password, no account created."""

import asyncio
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from clients.play import wait_until_scorable
from leaderboard.scores import MAX_TOTAL  # the documented largest total a player can hold
from local.services import Endpoints, aws_session
from tests.e2e.conftest import PROJECT_ROOT, LiveFeed
from tests.e2e.hostile import (
    ANONYMOUS,
    Account,
    assert_gateway,
    assert_live_refusal,
    assert_no_account,
    assert_problem,
    bearer,
    game_under_test,
    new_username,
    refused_subscribe,
)
from tests.e2e.test_scores_api import PASSWORD, standing, wait_for_total

pytestmark = pytest.mark.e2e
MAX_BODY_BYTES = 4096  # the functions' limit (leaderboard.http.MAX_BODY_BYTES, openapi.yaml's 413)
NEW_PASSWORD = "another horse battery"


def body_of(size: int, body: dict[str, Any]) -> bytes:
    """`body` as JSON of exactly `size` bytes (blanks after the opening brace: still the same object)."""
    text = json.dumps(body).encode()
    assert len(text) <= size
    return b"{" + b" " * (size - len(text)) + text[1:]


# --- Broken object-level authorization --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def scored_player(api_url: str) -> Account:
    """A player with a score (3 points), for cases that only read."""
    player = Account(api_url)
    player.play(3)
    wait_for_total(api_url, player.user_id, 3)
    return player


def test_a_player_cannot_score_another_players_action_nor_post_as_them(api_url: str) -> None:
    attacker, victim = Account(api_url), Account(api_url)
    theirs, mine = victim.open_action(), attacker.open_action()

    # Another's action as mine: 404 (as for an action that does not exist); as them: 403, with either action
    not_mine = attacker.post(1000, theirs["action_id"])
    as_them = attacker.post(1000, theirs["action_id"], user_id=victim.user_id)
    as_them_on_mine = attacker.post(1000, mine["action_id"], user_id=victim.user_id)

    assert assert_problem(not_mine, 404)["detail"] == "You have no such action."
    for refused in (as_them, as_them_on_mine):
        assert assert_problem(refused, 403)["detail"] == "Scores can only be posted for yourself."
    victim.assert_unscored()
    attacker.assert_unscored()
    # ...and both actions are still open, each for its own player
    for player, action, score in ((victim, theirs, 7), (attacker, mine, 5)):
        wait_until_scorable(action)
        assert player.post(score, action["action_id"]).status_code == 202
        wait_for_total(api_url, player.user_id, score)


def test_another_players_idempotency_key_replays_nothing_of_theirs(api_url: str) -> None:
    attacker, victim = Account(api_url), Account(api_url)
    theirs, mine = victim.open_action(), attacker.open_action()
    wait_until_scorable(theirs)
    key = f"e2e-{secrets.token_hex(8)}"
    first = victim.post(300, theirs["action_id"], key=key)
    assert first.status_code == 202, first.text

    # The victim's exact request (body and key) under the attacker's token; then the same key for the attacker's own
    replayed = attacker.post(300, theirs["action_id"], key=key, user_id=victim.user_id)
    wait_until_scorable(mine)
    own = attacker.post(40, mine["action_id"], key=key)

    assert assert_problem(replayed, 403)["detail"] == "Scores can only be posted for yourself."
    assert own.status_code == 202, own.text
    assert own.json() == {
        "action_id": mine["action_id"],
        "user_id": attacker.user_id,
        "score": 40,
        "status": "accepted",
    }
    wait_for_total(api_url, victim.user_id, 300)  # counted once
    wait_for_total(api_url, attacker.user_id, 40)


def test_logging_out_another_players_session_is_403_and_it_lives_on(api_url: str) -> None:
    attacker, victim = Account(api_url), Account(api_url)

    refused = attacker.http.post(f"{api_url}/v1/logout", json={"refresh_token": victim.refresh_token}, timeout=30)

    assert assert_problem(refused, 403)["detail"] == "This refresh token belongs to another player."
    victim.assert_session_lives()
    attacker.assert_session_lives()


def test_logging_out_everywhere_naming_another_player_ends_only_the_callers_sessions(api_url: str) -> None:
    attacker, victim = Account(api_url), Account(api_url)

    # The route takes no body and reads none: the caller is the token's player, whatever a body says
    ended = attacker.http.post(
        f"{api_url}/v1/logout/everywhere",
        json={"user_id": victim.user_id, "refresh_token": victim.refresh_token},
        timeout=30,
    )

    assert ended.status_code == 204, ended.text
    victim.assert_session_lives()
    attacker.assert_session_ended()


def test_a_standing_named_by_id_shows_no_private_field_and_tells_no_account_from_no_player(
    api_url: str, scored_player: Account
) -> None:
    scored, unscored = scored_player, Account(api_url)
    entry = {"user_id", "user_name", "rank", "score"}

    for path in (f"/v1/scores/{scored.user_id}", f"/v1/boards/global/scores/{scored.user_id}"):
        shown = requests.get(f"{api_url}{path}", timeout=30)
        assert shown.status_code == 200, shown.text
        assert entry <= set(shown.json()) <= entry | {"around", "board", "season"}
        assert all(set(neighbour) == entry for neighbour in shown.json()["around"])
        assert scored.username not in shown.text  # the login name is never shown
    # A registered player without a score answers exactly as an id nobody holds
    for path in ("/v1/scores/{}", "/v1/boards/global/scores/{}"):
        answers = [
            requests.get(f"{api_url}{path.format(user_id)}", timeout=30) for user_id in (unscored.user_id, "0" * 32)
        ]
        unscored_answer, nobodys = (assert_problem(answer, 404) for answer in answers)
        assert unscored_answer == nobodys


ODD_IDS = {
    "a newline": "a%0Ab",
    "a trailing newline": "{id}%0A",
    "a NUL": "{id}%00",
    "a byte that is no UTF-8": "%FF",
    "5000 characters": "a" * 5000,
    "a wildcard": "*",
    "a token family's marker": "user%23{id}",
    "non-ASCII": "%C3%A9",
}


@pytest.mark.parametrize("odd", ODD_IDS)
@pytest.mark.parametrize(
    "path", ["/v1/scores/{}", "/v1/boards/global/scores/{}", "/v1/boards/{}/scores", "/v1/boards/{}/scores/{{id}}"]
)
def test_an_id_no_player_or_board_has_is_404_and_never_reaches_anothers(
    api_url: str, scored_player: Account, path: str, odd: str
) -> None:
    # An odd spelling of a real player's id must not find them (ids are matched whole)
    url = f"{api_url}{path.format(ODD_IDS[odd]).replace('{id}', scored_player.user_id)}"

    answer = requests.get(url, timeout=30)

    assert answer.status_code == 404, answer.text
    if answer.headers["Content-Type"].startswith("application/problem+json"):
        assert_problem(answer, 404)
    else:
        assert_gateway(answer, 404, "Not Found")  # no route takes it: API Gateway's own


@pytest.mark.parametrize(
    "case",
    [
        "another's subtree",
        "own subtree",
        "every channel",
        "another's, deeper",
        "another's, the subscribe anonymous",
        "own, the subscribe anonymous",
    ],
)
def test_no_subscription_reaches_another_players_channel(
    live: LiveFeed, api_url: str, local_stack: Endpoints | None, case: str
) -> None:
    # (test_live_api.py covers another's channel, another's on a board, `/players/*` and anonymous on a player's)
    me, other = Account(api_url), Account(api_url)
    channel, authorization = {
        "another's subtree": (f"/players/{other.user_id}/*", me.access_token),
        "own subtree": (f"/players/{me.user_id}/*", me.access_token),  # wildcards would catch what is not theirs
        "every channel": ("/*", me.access_token),
        "another's, deeper": (f"/players/{other.user_id}/weekly/more", me.access_token),
        "another's, the subscribe anonymous": (f"/players/{other.user_id}", ANONYMOUS),
        "own, the subscribe anonymous": (f"/players/{me.user_id}", ANONYMOUS),  # the message's identity counts
    }[case]

    refused = asyncio.run(refused_subscribe(live, channel, authorization, connect_as=me.access_token))

    if local_stack is not None and case == "every channel":
        assert refused.error_type == "BadRequestException"  # the local Event API takes no wildcard at the root
    else:
        assert_live_refusal(refused, local_stack)


# --- Mass assignment --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("user_id", "0" * 32),
        ("password_hash", "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA"),
        ("banned", False),
        ("role", "moderator"),
        ("score", 10**9),
        ("display_name_keys", ["ada"]),
        ("created_at", 0),
    ],
)
def test_registering_with_a_field_it_does_not_take_is_400_and_creates_no_account(
    api_url: str, field: str, value: Any
) -> None:
    username = new_username()
    body = {"username": username, "password": PASSWORD, field: value}

    refused = requests.post(f"{api_url}/v1/users", json=body, timeout=30)

    problem = assert_problem(refused, 400)
    assert problem["errors"] == [{"field": field, "detail": "is not a field of this request"}]
    assert_no_account(api_url, username)


@pytest.fixture(scope="module")
def max_open(local_stack: Endpoints | None) -> int:
    """How many matches a player may hold open in the game under test."""
    return game_under_test(local_stack).action_types["match"].max_open


def assert_opens_exactly(player: Account, room: int) -> None:
    """The player can open `room` more matches, and not one more: what was refused before opened none."""
    for _ in range(room):
        player.open_action()
    refused = player.http.post(f"{player.base_url}/v1/actions", json={"type": "match"}, timeout=30)
    assert_problem(refused, 429)


def test_starting_an_action_with_fields_it_does_not_take_is_400_and_opens_none(
    api_url: str, max_open: int, subtests: pytest.Subtests
) -> None:
    player = Account(api_url)
    extras = {
        "max_score": 10**6,
        "started_at": 0,
        "expires_at": "2999-01-01T00:00:00Z",
        "scorable_at": "2000-01-01T00:00:00Z",
        "min_duration_seconds": 0,
        "action_id": "match.1.0000000000000000000",
        "user_id": Account(api_url).user_id,
    }
    for field, value in extras.items():
        with subtests.test(field=field):
            refused = player.http.post(f"{api_url}/v1/actions", json={"type": "match", field: value}, timeout=30)
            assert assert_problem(refused, 400)["errors"] == [
                {"field": field, "detail": "is not a field of this request"}
            ]

    assert_opens_exactly(player, max_open)


@pytest.mark.parametrize(
    ("path", "extra"),
    [
        ("/v1/login", {"user_id": "0" * 32}),
        ("/v1/token/refresh", {"user_id": "0" * 32}),
        ("/v1/logout", {"user_id": "0" * 32}),
        ("/v1/password", {"user_id": "0" * 32}),
        ("/v1/password", {"password_hash": "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA"}),
    ],
)
def test_an_account_route_given_a_field_it_does_not_take_is_400_and_changes_nothing(
    api_url: str, path: str, extra: dict[str, Any]
) -> None:
    player = Account(api_url)
    body = {
        "/v1/login": {"username": player.username, "password": PASSWORD},
        "/v1/token/refresh": {"refresh_token": player.refresh_token},
        "/v1/logout": {"refresh_token": player.refresh_token},
        "/v1/password": {"current_password": PASSWORD, "new_password": NEW_PASSWORD},
    }[path] | extra

    refused = player.http.post(f"{api_url}{path}", json=body, timeout=30)

    field = next(iter(extra))
    assert assert_problem(refused, 400)["errors"] == [{"field": field, "detail": "is not a field of this request"}]
    player.assert_session_lives()  # not spent, not revoked
    assert player.login().status_code == 200  # the password is still the old one


# --- Scores: every numeric edge, and fields a score does not take -----------------------------------------------------

# The score as JSON text -> the status: 400 for what is not a JSON integer exact in a double (or not JSON at all),
# 422 for an integer out of the action's range (1 to 1000 for a match).
SCORE_EDGES = {
    "0": 422,
    "-0": 422,
    "-1": 422,
    "1001": 422,
    "2147483648": 422,
    "9007199254740992": 422,  # 2^53: still exact, so a range error
    "-9007199254740992": 422,
    "9007199254740993": 400,  # 2^53 + 1: no longer exact in a double
    "-9007199254740993": 400,
    "18446744073709551616": 400,
    "1" + "0" * 400: 400,
    "1e3": 400,
    "1E3": 400,
    "1000.0": 400,
    "999.9999999999999999": 400,
    "-0.0": 400,
    "NaN": 400,
    "Infinity": 400,
    "-Infinity": 400,
    "true": 400,
    "false": 400,
    "null": 400,
    '"1000"': 400,
    '"1e3"': 400,
    '""': 400,
    "[1000]": 400,
    '{"value": 1000}': 400,
    "0x10": 400,
    "1_000": 400,
    "+1": 400,
    "01": 400,
    ".5": 400,
}
SCORE_EXTRAS = {
    "status": "accepted",
    "rank": 1,
    "accepted_at": 0,
    "type": "sprint",
    "max_score": 10**6,
    "total": 10**9,
    "idempotency_key": "k",
}


def test_every_malformed_score_is_refused_and_the_action_stays_open(api_url: str, subtests: pytest.Subtests) -> None:
    player = Account(api_url)
    action = player.open_action()
    raw = '{{"user_id": "{}", "action_id": "{}", "score": {}}}'
    headers = {"Content-Type": "application/json"}

    for text, status in SCORE_EDGES.items():
        with subtests.test(score=text[:24]):
            body = raw.format(player.user_id, action["action_id"], text)
            refused = player.http.post(f"{api_url}/v1/scores", data=body, headers=headers, timeout=30)
            problem = assert_problem(refused, status)
            if status == 400:
                assert problem["detail"].startswith(("The request body is invalid: score: ", "The request body is not"))
    for field, value in SCORE_EXTRAS.items():
        with subtests.test(field=field):
            extended = {"user_id": player.user_id, "score": 10, "action_id": action["action_id"], field: value}
            refused = player.http.post(f"{api_url}/v1/scores", json=extended, timeout=30)
            assert assert_problem(refused, 400)["errors"] == [
                {"field": field, "detail": "is not a field of this request"}
            ]

    player.assert_unscored()
    wait_until_scorable(action)
    assert player.post(1, action["action_id"]).status_code == 202  # the smallest score, on the action still open
    wait_for_total(api_url, player.user_id, 1)


def test_a_score_that_would_take_a_total_past_the_largest_is_422_and_counts_nothing(
    api_url: str, local_stack: Endpoints | None
) -> None:
    if local_stack is None:
        pytest.skip("sets a player's total near the largest in the stack's table: the local runtime's only")
    player = Account(api_url)
    action = player.open_action()
    # Given a ledger whose accepted total is 999 below the largest (as 10^12 matches would leave it)
    table = local_stack.identities["PlayerTotalsTable"].ref
    dynamodb = aws_session(local_stack.session_token).client("dynamodb", endpoint_url=local_stack.aws_endpoint_url)
    dynamodb.update_item(
        TableName=table,
        Key={"user_id": {"S": player.user_id}},
        UpdateExpression="SET accepted_total = :near",
        ExpressionAttributeValues={":near": {"N": str(MAX_TOTAL - 999)}},
    )
    wait_until_scorable(action)

    refused = player.post(1000, action["action_id"])

    assert assert_problem(refused, 422)["detail"] == f"This score would take your total past {MAX_TOTAL}."
    player.assert_unscored()
    assert player.post(999, action["action_id"]).status_code == 202  # exactly the largest total: accepted
    wait_for_total(api_url, player.user_id, 999)  # the boards count the points scored (999); the ledger is exact


# --- Oversize bodies and bodies not declared as JSON ------------------------------------------------------------------


@dataclass(frozen=True)
class Sent:
    """A request a route refused: who sent it, the body, and how many matches the game lets a player hold open."""

    player: Account
    body: dict[str, Any]
    max_open: int


@dataclass(frozen=True)
class Route:
    """A route that takes a JSON body: a valid body for a player, whether it wants their token, and the check that a
    refused request left everything as it was."""

    body: Callable[[Account], dict[str, Any]]
    with_token: bool
    unchanged: Callable[[Sent], None]


def _no_account(sent: Sent) -> None:
    assert_no_account(sent.player.base_url, sent.body["username"])


def _session_lives(sent: Sent) -> None:
    sent.player.assert_session_lives()


def _password_unchanged(sent: Sent) -> None:
    assert sent.player.login().status_code == 200  # the old password still works: it was not replaced


def _no_action_opened(sent: Sent) -> None:
    assert_opens_exactly(sent.player, sent.max_open)


def _unscored(sent: Sent) -> None:
    sent.player.assert_unscored()


def _still_logs_in(sent: Sent) -> None:
    assert sent.player.login().status_code == 200  # the account is as it was


ROUTES: dict[str, Route] = {
    "/v1/users": Route(lambda _: {"username": new_username(), "password": PASSWORD}, False, _no_account),
    "/v1/login": Route(lambda player: {"username": player.username, "password": PASSWORD}, False, _still_logs_in),
    "/v1/token/refresh": Route(lambda player: {"refresh_token": player.refresh_token}, False, _session_lives),
    "/v1/logout": Route(lambda player: {"refresh_token": player.refresh_token}, True, _session_lives),
    "/v1/password": Route(
        lambda _: {"current_password": PASSWORD, "new_password": NEW_PASSWORD}, True, _password_unchanged
    ),
    "/v1/actions": Route(lambda _: {"type": "match"}, True, _no_action_opened),
    "/v1/scores": Route(
        lambda player: {"user_id": player.user_id, "score": 10, "action_id": player.open_action()["action_id"]},
        True,
        _unscored,
    ),
}


def send(player: Account, path: str, data: bytes, content_type: str | None) -> requests.Response:
    headers = bearer(player.access_token) if ROUTES[path].with_token else {}
    if content_type is not None:
        headers["Content-Type"] = content_type
    return requests.post(f"{player.base_url}{path}", data=data, headers=headers, timeout=60)


@pytest.mark.parametrize("path", ROUTES)
def test_a_body_one_byte_over_the_limit_is_413_and_changes_nothing(api_url: str, max_open: int, path: str) -> None:
    player = Account(api_url)
    body = ROUTES[path].body(player)

    refused = send(player, path, body_of(MAX_BODY_BYTES + 1, body), "application/json")

    problem = assert_problem(refused, 413)
    assert problem["detail"] == f"The request body is larger than {MAX_BODY_BYTES} bytes."
    ROUTES[path].unchanged(Sent(player, body, max_open))


def test_a_body_of_exactly_the_limit_is_taken(api_url: str) -> None:
    username = new_username()
    body = body_of(MAX_BODY_BYTES, {"username": username, "password": PASSWORD})

    taken = requests.post(f"{api_url}/v1/users", data=body, headers={"Content-Type": "application/json"}, timeout=30)

    assert taken.status_code == 201, taken.text
    assert taken.json()["username"] == username


@pytest.mark.parametrize(
    ("size", "gateway"),
    [
        pytest.param(1024 * 1024, False, id="1 MB: the function's 413"),
        pytest.param(10 * 1024 * 1024 + 1, True, id="over 10 MB: API Gateway's 413"),
    ],
)
def test_a_big_body_is_413_and_creates_no_account(api_url: str, size: int, gateway: bool) -> None:
    username = new_username()
    body = body_of(size, {"username": username, "password": PASSWORD})

    refused = requests.post(f"{api_url}/v1/users", data=body, headers={"Content-Type": "application/json"}, timeout=120)

    if gateway:
        assert_gateway(refused, 413, None)
    else:
        assert_problem(refused, 413)
    assert_no_account(api_url, username)


NOT_JSON = [
    None,
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    "application/json; charset=iso-8859-1",
    "text/json",
    "application/merge-patch+json",
]


@pytest.mark.parametrize("content_type", NOT_JSON)
@pytest.mark.parametrize("path", ROUTES)
def test_a_body_not_declared_as_json_is_415_and_changes_nothing(
    api_url: str, max_open: int, path: str, content_type: str | None
) -> None:
    player = Account(api_url)
    body = ROUTES[path].body(player)

    refused = send(player, path, json.dumps(body).encode(), content_type)

    problem = assert_problem(refused, 415)
    assert problem["detail"] == "The request body must be JSON, sent with Content-Type: application/json."
    ROUTES[path].unchanged(Sent(player, body, max_open))


@pytest.mark.parametrize(
    "content_type", ["Application/JSON", "application/json; charset=UTF-8", 'application/json;charset="utf8"']
)
def test_json_declared_in_any_spelling_is_taken(api_url: str, content_type: str) -> None:
    username = new_username()
    body = json.dumps({"username": username, "password": PASSWORD}).encode()

    taken = requests.post(f"{api_url}/v1/users", data=body, headers={"Content-Type": content_type}, timeout=30)

    assert taken.status_code == 201, taken.text


UNREADABLE = {
    "a key spelled twice, once escaped": '{{"username": "{}", "password": "{}", "passwor\\u0064": "another one"}}',
    "nested 2000 deep": '{{"username": "{}", "password": "{}", "display_name": ' + "[" * 2000 + "]" * 2000 + "}}",
    "a lone surrogate": '{{"username": "{}", "password": "{}\\ud800"}}',
    "a byte-order mark": '\ufeff{{"username": "{}", "password": "{}"}}',
    "two objects": '{{"username": "{}", "password": "{}"}}{{}}',
    "trailing garbage": '{{"username": "{}", "password": "{}"}} x',
}


@pytest.mark.parametrize("case", UNREADABLE)
def test_a_body_json_readers_could_read_two_ways_is_400_and_registers_nobody(api_url: str, case: str) -> None:
    username = new_username()
    body = UNREADABLE[case].format(username, PASSWORD).encode()

    refused = requests.post(f"{api_url}/v1/users", data=body, headers={"Content-Type": "application/json"}, timeout=30)

    assert_problem(refused, 400)
    assert_no_account(api_url, username)


# --- Methods no route has ---------------------------------------------------------------------------------------------

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


def routes_by_path() -> dict[str, set[str]]:
    """The API's paths and their methods, from openapi.yaml (which tests/unit/test_openapi.py keeps in agreement with
    the template)."""
    document = yaml.safe_load(Path(PROJECT_ROOT / "openapi.yaml").read_text())
    return {path: {method.upper() for method in item} & set(METHODS) for path, item in document["paths"].items()}


def test_a_method_no_route_has_is_api_gateways_404_and_runs_nothing(api_url: str, subtests: pytest.Subtests) -> None:
    player = Account(api_url)
    player.play(21)
    wait_for_total(api_url, player.user_id, 21)
    action = player.open_action()
    body = {
        "user_id": player.user_id,
        "score": 1000,
        "action_id": action["action_id"],
        "refresh_token": player.refresh_token,
    }

    for path, methods in routes_by_path().items():
        named = path.format(user_id=player.user_id, board="global")
        for method in sorted(set(METHODS) - methods):
            with subtests.test(method=method, path=path):
                refused = player.http.request(method, f"{api_url}{named}", json=body, timeout=30)
                assert_gateway(refused, 404, "Not Found")

    assert standing(api_url, player.user_id).json()["score"] == 21
    player.assert_session_lives()
    assert player.login().status_code == 200
    wait_until_scorable(action)
    assert player.post(4, action["action_id"]).status_code == 202  # the open action was never scored
    wait_for_total(api_url, player.user_id, 25)
