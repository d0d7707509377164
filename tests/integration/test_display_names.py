"""Display names through POST /v1/users in-process (moto, tables from template.yaml): names that look alike or break
a rule are refused and change nothing; a player who chooses no name gets a generated one, never their username;
two registrations racing for look-alike names end with one holder."""

import json
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from functions.login import register
from leaderboard import names, users
from tests.conftest import FakeLambdaContext, load_event
from tests.integration.conftest import Stack

PASSWORD = "correct horse battery"


def sign_up(username: str, display_name: str | None = None) -> tuple[int, dict[str, Any]]:
    event = load_event("register_ok")
    body = {"username": username, "password": PASSWORD}
    if display_name is not None:
        body["display_name"] = display_name
    event["body"] = json.dumps(body)
    return answer(event)


def answer(event: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    response = register.lambda_handler(event, FakeLambdaContext())
    return response["statusCode"], json.loads(response["body"])


def accounts(stack: Stack) -> dict[str, dict[str, Any]]:
    return {item["username"]["S"]: item for item in stack.items("UsersTable")}


def claims(stack: Stack) -> dict[str, str]:
    """Each look-alike key held, and its holder's user id."""
    return {item["name_key"]["S"]: item["user_id"]["S"] for item in stack.items("DisplayNamesTable")}


def test_an_account_claims_its_names_keys_in_the_same_write(stack: Stack) -> None:
    status, body = answer(load_event("register_ok"))

    assert (status, body["display_name"]) == (201, "Alice")
    keys = names.lookalike_keys("Alice")
    assert claims(stack) == dict.fromkeys(keys, body["user_id"])
    assert set(accounts(stack)["alice"]["display_name_keys"]["SS"]) == keys


def test_the_name_is_stored_and_answered_as_normalized(stack: Stack) -> None:
    status, body = sign_up("bob", "  \uff22\uff4f\uff42   Ross ")  # a full-width "Bob"

    assert (status, body["display_name"]) == (201, "Bob Ross")
    assert accounts(stack)["bob"]["display_name"]["S"] == "Bob Ross"


def test_without_a_display_name_a_player_gets_a_generated_one_never_their_username(stack: Stack) -> None:
    status, body = answer(load_event("register_no_display_name"))

    assert status == 201
    assert re.fullmatch(r"Player [1-9]\d{4}", body["display_name"]), body
    assert body["username"] == "bob_42"
    assert set(claims(stack)) == names.lookalike_keys(body["display_name"])


def test_a_generated_name_that_is_taken_is_drawn_again(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a player who chose "Player 12345", and a draw that comes up with that name first
    assert sign_up("first", "Player 12345")[0] == 201
    draws = iter(["Player 12345", "Player 67890"])
    monkeypatch.setattr(names, "default_name", lambda digits: next(draws))

    status, body = sign_up("second")

    assert (status, body["display_name"]) == (201, "Player 67890")
    assert len(accounts(stack)) == 2


@pytest.mark.parametrize(
    "lookalike",
    # Cyrillic capital A; other cases; full width; spaces; a Ukrainian capital I for the small L
    ["\u0410lice", "alice", "ALICE", "\uff21\uff4c\uff49\uff43\uff45", " Alice ", "A\u0406ice"],
)
def test_a_name_that_looks_like_one_held_is_409_and_changes_nothing(stack: Stack, lookalike: str) -> None:
    # Given Alice holds "Alice"
    status, _ = answer(load_event("register_ok"))
    assert status == 201
    before = (accounts(stack), claims(stack))

    # When another player asks for a name that looks the same
    status, problem = sign_up("mallory", lookalike)

    # Then a 409 that says the display name is taken, and no account and no claim was added
    assert status == 409
    assert problem["detail"] == (
        "This display name is taken: another player's name looks the same. Choose another display name."
    )
    assert (accounts(stack), claims(stack)) == before


def test_the_lookalike_event_is_refused_after_the_ok_one(stack: Stack) -> None:
    assert answer(load_event("register_ok"))[0] == 201

    status, problem = answer(load_event("register_lookalike_display_name"))

    assert (status, problem["title"]) == (409, "Conflict")
    assert "mallory" not in accounts(stack)


def test_a_taken_username_is_told_apart_from_a_taken_display_name(stack: Stack) -> None:
    assert sign_up("alice", "Alice")[0] == 201
    before = (accounts(stack), claims(stack))

    username_taken = sign_up("ALICE", "Someone Else")
    both_taken = sign_up("Alice", "alice")  # the username is told first

    assert username_taken == both_taken
    assert username_taken[0] == 409
    assert username_taken[1]["detail"] == "This username is taken; choose another."
    assert (accounts(stack), claims(stack)) == before  # "Someone Else" was not claimed either


@pytest.mark.parametrize(
    ("display_name", "detail"),
    [
        ("\u3164", "is invisible"),
        ("Alice\u200b", "an invisible formatting character"),
        ("\u2800", "is a symbol"),
        ("...", "must have at least one letter or number"),
        ("x" * 33, "is 33 characters long"),
        ("Zoe\u0308\u0308", "the same mark twice"),
    ],
)
def test_a_name_that_breaks_a_rule_is_400_and_stores_nothing(stack: Stack, display_name: str, detail: str) -> None:
    status, problem = sign_up("mallory", display_name)

    assert status == 400
    assert detail in problem["detail"]
    assert [error["field"] for error in problem["errors"]] == ["display_name"]
    assert (accounts(stack), claims(stack)) == ({}, {})


def test_the_invisible_name_event_is_a_400(stack: Stack) -> None:
    status, problem = answer(load_event("register_invisible_display_name"))

    assert status == 400
    assert "U+3164 (HANGUL FILLER)" in problem["detail"]  # what was sent, named
    assert (accounts(stack), claims(stack)) == ({}, {})


def test_racing_registrations_of_lookalike_names_leave_one_holder(stack: Stack) -> None:
    # Given eight players asking at the same moment for names that each look like all the others
    spellings = [
        "Alice",
        "alice",
        "ALICE",
        "\u0410lice",
        "\u0430lice",
        "\uff21\uff4c\uff49\uff43\uff45",
        "Alice ",
        " alice",
    ]
    keys = [names.lookalike_keys(names.normalize(spelling)) for spelling in spellings]
    assert all(mine & theirs for mine in keys for theirs in keys)
    start = threading.Barrier(len(spellings))

    def race(index: int) -> tuple[int, dict[str, Any]]:
        start.wait()
        return sign_up(f"racer_{index}", spellings[index])

    with ThreadPoolExecutor(len(spellings)) as pool:
        results = list(pool.map(race, range(len(spellings))))

    # Then one got the name and seven were told it is taken; only the winner's account and claims exist
    statuses = sorted(status for status, _ in results)
    assert statuses == [201] + [409] * 7
    winner = next(body for status, body in results if status == 201)
    assert list(accounts(stack)) == [winner["username"]]
    assert set(claims(stack).values()) == {winner["user_id"]}


class ConflictingFirst:
    """The stack's DynamoDB, except that the first `conflicts` transactions are cancelled as DynamoDB cancels one
    that another transaction's write to the same item overlapped (TransactionConflict)."""

    def __init__(self, client: Any, conflicts: int) -> None:
        self.client, self.exceptions, self.conflicts = client, client.exceptions, conflicts

    def transact_write_items(self, **request: Any) -> Any:
        if self.conflicts:
            self.conflicts -= 1
            reasons = [{"Code": "None"}] + [{"Code": "TransactionConflict"}] * (len(request["TransactItems"]) - 1)
            error = {"Error": {"Code": "TransactionCanceledException", "Message": ""}, "CancellationReasons": reasons}
            raise self.exceptions.TransactionCanceledException(error, "TransactWriteItems")
        return self.client.transact_write_items(**request)


def test_a_transaction_cancelled_by_a_conflict_is_tried_again(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(users, "dynamodb", lambda: ConflictingFirst(stack.dynamodb, conflicts=2))

    status, body = sign_up("alice", "Alice")

    assert status == 201
    assert set(claims(stack).values()) == {body["user_id"]}


def test_a_third_conflict_is_503_and_stores_nothing(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(users, "dynamodb", lambda: ConflictingFirst(stack.dynamodb, conflicts=3))

    status, body = sign_up("alice", "Alice")

    assert (status, body["detail"]) == (503, "The account could not be created yet; try again.")
    assert (accounts(stack), claims(stack)) == ({}, {})
