"""Moderation (IAM routes, audited): removing a player's points from a season of a board, banning and unbanning;
the boards follow even with scores in flight, and a rebuild agrees."""

import json
import time
from typing import Any

import pytest

from functions.moderation import ban_player, remove_points, unban_player
from functions.scores import rebuild_board
from leaderboard.board import PlayerTotal
from leaderboard.identity import Identity
from tests.conftest import FakeLambdaContext, load_event
from tests.integration.conftest import Game
from tests.integration.test_auth import Watched, watched

__all__ = ["watched"]  # the fixture, shared with test_auth

MODERATOR = "arn:aws:iam::123456789012:user/moderator"


def moderate(handler: Any, event_name: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    event = load_event(event_name)
    event["body"] = json.dumps(body)
    response = handler.lambda_handler(event, FakeLambdaContext())
    return response["statusCode"], json.loads(response["body"])


def remove(game: Game, player: Identity, board: str = "weekly") -> tuple[int, dict[str, Any]]:
    season = game.board(board).season
    return moderate(remove_points, "remove_points", {"user_id": player.user_id, "board": board, "season": season,
                                                     "reason": "modified client"})  # fmt: skip


def ban(player: Identity) -> tuple[int, dict[str, Any]]:
    return moderate(ban_player, "ban_player", {"user_id": player.user_id, "reason": "bot"})


def unban(player: Identity) -> tuple[int, dict[str, Any]]:
    return moderate(unban_player, "unban_player", {"user_id": player.user_id, "reason": "appeal upheld"})


def on_board(game: Game, board: str = "global") -> dict[str, int]:
    return {standing.user_id: standing.score for standing in game.board(board).page(0, 100)}


def audit(game: Game, player: Identity) -> list[dict[str, Any]]:
    items = [item for item in game.stack.items("ModerationAuditTable") if item["user_id"]["S"] == player.user_id]
    return sorted(items, key=lambda item: item["audit_id"]["S"])


def test_removing_points_takes_the_player_off_that_season_only_and_is_audited(game: Game) -> None:
    ann, bob = game.player("ann"), game.player("bob")
    game.score(ann, 500)
    game.score(bob, 300)
    game.drain()

    status, body = remove(game, ann)

    assert status == 200, body
    assert (body["action"], body["points"], body["operator"], body["board"]) == (
        "remove_points",
        500,
        MODERATOR,
        "weekly",
    )
    assert on_board(game, "weekly") == {bob.user_id: 300}
    assert on_board(game, "global") == {ann.user_id: 500, bob.user_id: 300}
    assert game.total(ann, f"weekly/{game.board('weekly').season}") == 0
    [record] = audit(game, ann)
    assert (record["action"]["S"], record["reason"]["S"], record["points"]["N"]) == (
        "remove_points",
        "modified client",
        "500",
    )
    # Points scored afterwards count again.
    game.score(ann, 40)
    game.drain()
    assert on_board(game, "weekly")[ann.user_id] == 40


def test_a_score_in_flight_when_points_are_removed_does_not_bring_them_back(game: Game) -> None:
    ann = game.player("ann")
    game.score(ann, 500)
    game.drain()
    game.score(ann, 100)  # accepted before the removal, applied after it
    weekly = game.board("weekly")
    stale = PlayerTotal(ann.user_id, "Ann", 500, int(time.time() * 1000) - 1)

    assert remove(game, ann)[0] == 200
    game.drain()
    weekly.set_totals([stale])  # a consumer's write that read the ledger before the removal

    assert ann.user_id not in on_board(game, "weekly")
    assert game.total(ann, f"weekly/{weekly.season}") == 0
    assert on_board(game, "global")[ann.user_id] == 600
    # Nor after she scores again: the fence outlives her new entry.
    game.score(ann, 40)
    game.drain()
    weekly.set_totals([stale])
    assert on_board(game, "weekly")[ann.user_id] == 40
    assert game.total(ann, f"weekly/{weekly.season}") == 40


def test_a_score_accepted_after_a_removal_counts_even_on_a_clock_behind_the_moderators(
    game: Game, monkeypatch: pytest.MonkeyPatch
) -> None:
    ann = game.player("ann")
    game.score(ann, 500)
    game.drain()
    action_id = game.action(ann)
    time.sleep(0.02)  # the action starts before the skewed clock below, or its score would be too early (422)
    assert remove(game, ann)[0] == 200
    item = game.stack.dynamodb.get_item(
        TableName=game.stack.physical_id("PlayerTotalsTable"), Key={"user_id": {"S": ann.user_id}}
    )["Item"]
    [fence] = [int(at["N"]) for at in item["fences"]["M"].values()]

    with monkeypatch.context() as patch:
        patch.setattr(time, "time", lambda: (fence - 5) / 1000)  # PostScore's clock, 5 ms behind the moderator's
        assert game.post(ann, {"user_id": ann.user_id, "score": 40, "action_id": action_id})[0] == 202
    game.drain()

    assert on_board(game, "weekly")[ann.user_id] == 40, "reached after the fence, whatever the clocks said"
    assert on_board(game, "global")[ann.user_id] == 540


def test_a_player_whose_points_were_removed_can_be_banned_and_a_banned_one_can_lose_points(game: Game) -> None:
    ann, bob = game.player("ann"), game.player("bob")
    for player in (ann, bob):
        game.score(player, 100)
    game.drain()

    assert remove(game, ann)[0] == 200
    assert ban(ann)[0] == 200
    assert ban(bob)[0] == 200
    assert remove(game, bob)[0] == 200
    assert unban(bob)[0] == 200

    assert bob.user_id not in on_board(game, "weekly")
    assert on_board(game, "global")[bob.user_id] == 100
    assert [record["action"]["S"] for record in audit(game, bob)] == ["ban", "remove_points", "unban"]


def test_a_banned_player_is_hidden_from_every_board_refused_and_back_when_unbanned(game: Game) -> None:
    ann, bob = game.player("ann"), game.player("bob")
    game.score(ann, 500)
    game.score(bob, 300)
    game.drain()
    open_action = game.action(ann)
    game.score(ann, 70)  # accepted before the ban, applied after it

    status, body = ban(ann)
    game.drain()

    assert (status, body["action"]) == (200, "ban")
    for board in ("global", "weekly", "daily-best"):
        assert ann.user_id not in on_board(game, board)
    assert game.standing(ann.user_id)[0] == 404
    assert game.start(ann)[0] == 403
    assert game.post(ann, {"user_id": ann.user_id, "score": 10, "action_id": open_action})[0] == 403
    rebuild_board.lambda_handler(load_event("rebuild_board"), FakeLambdaContext())
    assert ann.user_id not in on_board(game, "global")  # a rebuild keeps them hidden
    assert game.total(ann) == 570  # the ledger kept what was accepted before the ban

    status, body = unban(ann)

    assert (status, body["action"]) == (200, "unban")
    assert on_board(game, "global") == {ann.user_id: 570, bob.user_id: 300}
    assert on_board(game, "daily-best")[ann.user_id] == 500
    assert game.post(ann, {"user_id": ann.user_id, "score": 10, "action_id": open_action})[0] == 202
    assert [record["action"]["S"] for record in audit(game, ann)] == ["ban", "unban"]


@pytest.mark.parametrize(
    ("handler", "event_name", "body", "status"),
    [
        (ban_player, "ban_player", {"user_id": "nobody", "reason": "bot"}, 404),
        (ban_player, "ban_player", {"user_id": "nobody", "reason": ""}, 400),
        (ban_player, "ban_player", {"user_id": "nobody"}, 400),
        (unban_player, "unban_player", {"user_id": "nobody", "reason": "appeal"}, 404),
        (remove_points, "remove_points", {"user_id": "u", "board": "nope", "season": "all", "reason": "r"}, 404),
        (remove_points, "remove_points", {"user_id": "u", "board": "weekly", "season": "all", "reason": "r"}, 404),
    ],
)
def test_bad_moderation_requests_change_nothing(
    game: Game, handler: Any, event_name: str, body: dict[str, Any], status: int
) -> None:
    assert moderate(handler, event_name, body)[0] == status
    assert game.stack.items("ModerationAuditTable") == []


def test_unbanning_a_player_who_is_not_banned_is_409_and_removing_nothing_is_404(game: Game) -> None:
    ann = game.player("ann")
    assert unban(ann)[0] == 409
    assert remove(game, ann)[0] == 404  # no points on that season
    assert audit(game, ann) == []


def test_moderation_and_a_banned_players_attempts_are_security_events(game: Game, watched: Watched) -> None:
    ann = game.player("ann")
    game.score(ann, 10)
    game.drain()
    watched.clear()

    assert ban(ann)[0] == 200
    assert game.start(ann)[0] == 403

    address = load_event("start_action_ok")["requestContext"]["http"]["sourceIp"]
    assert watched.events() == [("Moderation", ann.user_id, MODERATOR), ("BannedPlayerRefused", ann.user_id, address)]
    assert watched.counted() == ["Moderation", "BannedPlayerRefused"]
