"""Scores the studio's own game servers post (POST /v1/server/scores, IAM): exactly once, on the boards they feed,
past the limits on what players post themselves."""

import json
from collections.abc import Iterator
from typing import Any
from unittest import mock

import pytest

from functions.scores import post_server_score
from leaderboard.identity import Identity
from tests.conftest import FakeLambdaContext, load_event
from tests.integration.conftest import Game

GAME = {
    "action_types": {
        "match": {"max_score": 1000, "lifetime_seconds": 3600},
        "sprint": {"max_score": 100, "lifetime_seconds": 60, "min_duration_seconds": 20, "max_open": 1,
                   "max_scores_per_hour": 2, "max_points_per_hour": 150},
    },
    "boards": [
        {"id": "global", "title": "All time", "action_types": ["match", "sprint"], "aggregate": "sum", "reset": "none"},
        {"id": "ranked", "title": "Ranked", "action_types": ["match"], "aggregate": "sum", "reset": "none",
         "server_scores_only": True},
    ],
}  # fmt: skip


@pytest.fixture
def servers(game: Game) -> Iterator[Game]:
    with mock.patch.dict("os.environ", {"GAME": json.dumps(GAME)}):
        yield game


def post(player: Identity | str, action_id: str, score: Any, action_type: str = "match") -> tuple[int, dict[str, Any]]:
    user_id = player if isinstance(player, str) else player.user_id
    event = load_event("post_server_score")
    event["body"] = json.dumps({"user_id": user_id, "action_id": action_id, "score": score, "type": action_type})
    response = post_server_score.lambda_handler(event, FakeLambdaContext())
    return response["statusCode"], json.loads(response["body"])


def test_a_server_score_feeds_every_board_of_its_type_including_server_only_ones(servers: Game) -> None:
    ann, bob = servers.player("ann"), servers.player("bob")

    status, body = post(ann, "match-42", 300)
    assert (status, body) == (
        202,
        {"action_id": "match-42", "user_id": ann.user_id, "score": 300, "status": "accepted"},
    )
    assert post(bob, "match-42", 200)[0] == 202  # one match of the server's: a score per player
    servers.score(ann, 50)  # her own score: not on the server-only board
    servers.drain()

    assert servers.total(ann) == 350
    assert servers.total(ann, "ranked/all") == 300
    assert servers.total(bob) == 200
    assert servers.total(bob, "ranked/all") == 200
    ranked = servers.board("ranked").top()
    assert [(s.user_name, s.score) for s in ranked] == [("Ann", 300), ("Bob", 200)]  # the names the ledger holds


def test_the_same_score_posted_again_is_accepted_again_and_counted_once(servers: Game) -> None:
    ann = servers.player("ann")
    assert post(ann, "match-7", 300)[0] == 202
    assert post(ann, "match-7", 300)[0] == 202  # a retry after a lost answer
    assert post(ann, "match-7", 301)[0] == 409  # another score for the same player and action
    assert servers.drain() == 1
    assert servers.total(ann) == 300


def test_server_scores_skip_the_players_limits(servers: Game) -> None:
    ann = servers.player("ann")
    for match in range(5):  # sprint: 2 scores and 150 points an hour, 20 s each, for players' own scores
        assert post(ann, f"sprint-{match}", 100, "sprint")[0] == 202
    servers.drain()
    assert servers.total(ann) == 500


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"user_id": "u", "action_id": "m", "score": 1.5}, 400),
        ({"user_id": "u", "action_id": "has space", "score": 1}, 400),
        ({"user_id": "u", "action_id": "m", "score": 1, "extra": 1}, 400),
        ({"user_id": "nobody", "action_id": "m", "score": 1}, 404),
        ({"user_id": "nobody", "action_id": "m", "score": 1001}, 422),
        ({"user_id": "nobody", "action_id": "m", "score": 1, "type": "raid"}, 422),
    ],
)
def test_bad_server_scores_change_nothing(servers: Game, body: dict[str, Any], status: int) -> None:
    event = load_event("post_server_score")
    event["body"] = json.dumps(body)
    response = post_server_score.lambda_handler(event, FakeLambdaContext())
    assert response["statusCode"] == status, response["body"]
    assert servers.stack.items("ActionsTable") == []
    assert servers.receive() == []


def test_a_banned_players_server_score_is_403_and_changes_nothing(servers: Game) -> None:
    from tests.integration.test_moderation import ban

    ann = servers.player("ann")
    assert post(ann, "round-1", 40)[0] == 202
    assert ban(ann)[0] == 200

    status, problem = post(ann, "round-2", 50)

    assert (status, problem["status"]) == (403, 403)
    assert servers.total(ann) == 40
    assert [item["action_id"]["S"].rsplit("/", 1)[-1] for item in servers.stack.items("ActionsTable")] == ["round-1"]
