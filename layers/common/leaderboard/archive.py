"""Past seasons: the final top 100 of every season that ended, kept for good in SeasonArchiveTable.

A season's keys leave Redis on their own once its readable days are over (board.py); before that, a scheduled
function (RollOverSeasonsFunction) copies its top 100 here. It runs every few minutes and copies a season again
whenever its version rose since (a score accepted before the reset and applied after it), so the archive ends up
with the season's last word. A season's players only ever grow in number, so a copy with fewer players than the
archive's is a season Redis lost (restarted empty, not rebuilt yet: a late score alone raised its version) and never
overwrites it.
"""

import json
from collections.abc import Iterator
from typing import Any

from leaderboard.aws import dynamodb
from leaderboard.board import Standing, open_board
from leaderboard.config import settings
from leaderboard.game import BoardDefinition, game
from leaderboard.seasons import Season, previous

ARCHIVED_TOP = 100


def ended_seasons(definition: BoardDefinition, now_ms: int) -> Iterator[Season]:
    """The board's seasons that ended and are still readable, latest first."""
    season = previous(definition.reset, definition.season_at(now_ms))
    while season.ended_by(now_ms) and definition.is_readable(season, now_ms):
        yield season
        season = previous(definition.reset, season)


def archive_ended_seasons(now_ms: int) -> list[str]:
    """Copy the top 100 of every ended, readable season whose version rose since it was last copied; what was."""
    archived = []
    for definition in game().boards.values():
        for season in ended_seasons(definition, now_ms):
            board = open_board(definition, season)
            seq, players = board.snapshot().seq, board.size()
            if seq and _archive(definition.id, season.name, seq, players, board.page(0, ARCHIVED_TOP)):
                archived.append(f"{definition.id}/{season.name}")
    return archived


def _archive(board_id: str, season: str, seq: int, players: int, top: list[Standing]) -> bool:
    client = dynamodb()
    try:
        client.put_item(
            TableName=settings.season_archive_table,
            Item={
                "board": {"S": board_id},
                "season": {"S": season},
                "seq": {"N": str(seq)},
                "players": {"N": str(players)},
                "top": {"S": json.dumps([standing.body() for standing in top], separators=(",", ":"))},
            },
            ConditionExpression="attribute_not_exists(seq) OR (seq < :seq AND players <= :players)",
            ExpressionAttributeValues={":seq": {"N": str(seq)}, ":players": {"N": str(players)}},
        )
    except client.exceptions.ConditionalCheckFailedException:
        return False  # archived already at this version, or Redis lost the season
    return True


def archived_top(board_id: str, season: str) -> list[Standing] | None:
    """The archived top 100 of a season; None if it was never archived."""
    item = (
        dynamodb()
        .get_item(TableName=settings.season_archive_table, Key={"board": {"S": board_id}, "season": {"S": season}})
        .get("Item")
    )
    if item is None:
        return None
    entries: list[dict[str, Any]] = json.loads(item["top"]["S"])
    return [Standing(entry["user_id"], entry["user_name"], entry["rank"], entry["score"]) for entry in entries]
