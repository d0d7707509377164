"""RebuildBoard's schedule: every minute `{"if_lost": true}` (template.yaml's rule; events/rebuild_board_if_lost.json)
rebuilds every board from DynamoDB when Redis has lost them, with nobody to ask it; otherwise it reads one key."""

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from unittest import mock

import pytest

from functions.scores import rebuild_board
from leaderboard import aws, board, board_sync
from tests.conftest import FakeLambdaContext, load_event
from tests.integration.conftest import Game


def scheduled_run() -> dict[str, Any]:
    """RebuildBoardFunction invoked as its schedule invokes it."""
    return dict(rebuild_board.lambda_handler(load_event("rebuild_board_if_lost"), FakeLambdaContext()))


def redis_comes_back_empty(game: Game) -> None:
    keys = list(game.redis.scan_iter(match=f"{os.environ['REDIS_KEY_PREFIX']}:*"))
    if keys:
        game.redis.delete(*keys)


@contextmanager
def counted_scans() -> Iterator[list[str]]:
    """The DynamoDB Scan requests made in the block (the rebuild reads the ledger with them)."""
    scans: list[str] = []

    def count(params: dict[str, Any], **_: Any) -> None:
        scans.append(params["TableName"])

    events = aws.dynamodb().meta.events
    events.register("provide-client-params.dynamodb.Scan", count)
    try:
        yield scans
    finally:
        events.unregister("provide-client-params.dynamodb.Scan", count)


def played(game: Game) -> list[str]:
    """A few players' scores, applied: the players."""
    players = [game.player(f"p{index}") for index in range(4)]
    for index, player in enumerate(players):
        game.score(player, 10 * (index + 1))
    game.drain()
    return [player.user_id for player in players]


def boards(game: Game, players: list[str]) -> tuple[list[dict[str, Any]], list[tuple[int, dict[str, Any]]]]:
    """What the API answers: the top 10, and the players' standings."""
    return game.top(), [game.standing(user_id) for user_id in players]


def test_a_redis_that_came_back_empty_is_restored_whole_by_the_next_scheduled_run(game: Game) -> None:
    players = played(game)
    before = boards(game, players)
    assert scheduled_run()["players"] != {}  # a new Redis (a first deploy) has no mark yet: restored once
    redis_comes_back_empty(game)
    assert game.top() == []

    result = scheduled_run()

    assert sorted(result["players"].values()) == [4, 4, 4]  # all time, this week, today
    assert boards(game, players) == before
    restoration = board.restoration()
    assert restoration.needed() is False
    assert game.redis.exists(restoration.keys["rebuilding"]) == 0  # the lock is given back


def test_with_the_boards_marked_restored_a_run_reads_nothing_from_dynamodb(game: Game) -> None:
    played(game)
    scheduled_run()

    with counted_scans() as scans:
        result = scheduled_run()

    assert (result, scans) == ({"players": {}}, [])


def test_a_run_leaves_a_rebuild_under_way_alone(game: Game) -> None:
    played(game)
    another = board.restoration().begin(hold_ms=60_000)

    with counted_scans() as scans:
        result = scheduled_run()

    assert (result, scans) == ({"players": {}}, [])
    assert board.restoration().needed() is True  # that rebuild marks the boards when it completes
    assert board.restoration().end(str(another), restored_at_ms=1) is True


def test_a_failed_rebuild_leaves_no_mark_and_the_next_minute_tries_again(game: Game) -> None:
    players = played(game)
    before = boards(game, players)
    redis_comes_back_empty(game)

    with (
        mock.patch.object(board_sync, "rebuild", side_effect=TimeoutError("DynamoDB did not answer")),
        pytest.raises(TimeoutError),
    ):
        scheduled_run()
    assert board.restoration().needed() is True
    scheduled_run()  # the next minute: the failed run gave its lock back

    assert board.restoration().needed() is False
    assert boards(game, players) == before


def test_a_rebuild_that_redis_forgot_midway_leaves_no_mark(game: Game) -> None:
    players = played(game)
    before = boards(game, players)
    redis_comes_back_empty(game)
    real_rebuild = board_sync.rebuild

    def rebuild_then_redis_restarts(now_ms: int) -> Any:
        written = real_rebuild(now_ms)
        redis_comes_back_empty(game)  # everything it wrote is gone, its lock too
        return written

    with mock.patch.object(board_sync, "rebuild", rebuild_then_redis_restarts):
        scheduled_run()
    assert board.restoration().needed() is True
    scheduled_run()

    assert boards(game, players) == before
