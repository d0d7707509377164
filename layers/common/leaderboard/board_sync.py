"""The boards in Redis brought up to the ledger in DynamoDB (scores.py): by the consumer, player by player, as their
changes arrive through the queue; by the rebuild, everyone at once.

Both write the points the ledger holds, absolute, and the boards keep a write only if it moves the player up (or is
the same): a duplicate message, a consumer racing a rebuild, a stale read racing a fresh one all converge to the
ledger. A banned player's points are never written (their standings are hidden until unbanned).
"""

import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from aws_lambda_powertools import Logger

from leaderboard import live
from leaderboard.aws import batch_get, dynamodb
from leaderboard.board import Board, PlayerTotal, open_board
from leaderboard.config import settings
from leaderboard.game import BoardDefinition, game
from leaderboard.scores import UNWRITTEN_AFTER_MS, PlayerChanged, PlayerLedger, SeasonKey
from leaderboard.seasons import Season

logger = Logger(child=True)

# The consumer usually gets a change before its write lands (the write follows the send by milliseconds): it reads the
# player again after each of these pauses (seconds) before giving the message back to the queue.
_CATCH_UP_PAUSES = (0.05, 0.1, 0.2, 0.4, 0.8)


@dataclass
class Synced:
    """What a batch of changes comes to: the points to write, per season, and the messages to give back to the queue
    (their write has not landed yet) or to drop (it never will)."""

    points: dict[SeasonKey, list[PlayerTotal]] = field(default_factory=lambda: defaultdict(list))
    waiting: list[str] = field(default_factory=list)
    unwritten: list[str] = field(default_factory=list)


def sync(batch: Mapping[str, PlayerChanged], now_ms: int, pause: Callable[[float], None] = time.sleep) -> Synced:
    """The players' points on the seasons their changes name, as the ledger holds them once it has each change (one
    read for the batch). `batch` maps message ids to the changes."""
    wanted: dict[str, int] = {}
    for change in batch.values():
        wanted[change.user_id] = max(change.rev, wanted.get(change.user_id, 0))
    items = _read_players(wanted)
    for seconds in _CATCH_UP_PAUSES:
        behind = [user_id for user_id, rev in wanted.items() if _rev(items.get(user_id)) < rev]
        if not behind:
            break
        pause(seconds)
        items |= _read_players(behind)
    synced = Synced()
    seasons: dict[str, set[SeasonKey]] = defaultdict(set)
    for message_id, change in batch.items():
        if _rev(items.get(change.user_id)) >= change.rev:
            seasons[change.user_id].update(change.seasons)
        elif now_ms - change.sent_at_ms > UNWRITTEN_AFTER_MS:
            synced.unwritten.append(message_id)
        else:
            synced.waiting.append(message_id)
    for user_id, keys in seasons.items():
        ledger = PlayerLedger.of(items[user_id])
        if ledger.banned_at_ms is not None:
            continue
        for key in keys & ledger.seasons.keys():
            points, reached_at_ms = ledger.seasons[key]
            if not _readable(key, reached_at_ms, now_ms):
                continue  # a change that waited in the dead-letter queue past its season's readable days
            synced.points[key].append(PlayerTotal(user_id, ledger.display_name, points, reached_at_ms))
    return synced


def _readable(key: SeasonKey, reached_at_ms: int, now_ms: int) -> bool:
    """Whether the season is readable. One the points were reached in has started, even if this function's clock has
    not reached its start yet: the clock of the function that accepted the score may run a little ahead of it."""
    return game().readable_season(*key, max(now_ms, reached_at_ms)) is not None


def _rev(item: dict[str, Any] | None) -> int:
    return int((item or {}).get("rev", {}).get("N", 0))


def _read_players(user_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """The players' items, strongly consistent, in one BatchGetItem (more if DynamoDB says so)."""
    table = settings.player_totals_table
    keys = [{"user_id": {"S": user_id}} for user_id in user_ids]
    request: Any = {table: {"Keys": keys, "ConsistentRead": True}} if keys else None
    return {item["user_id"]["S"]: item for item in batch_get(request).get(table, [])}


def update_boards(points: Mapping[SeasonKey, list[PlayerTotal]], now_ms: int) -> None:
    """Bring the boards up to the ledger for these players; a change to a season on show is published live (one
    wake-up request for all the boards whose publishing lease a write took)."""
    leases: list[tuple[Board, str | None]] = []
    for (board_id, season_name), totals in points.items():
        found = game().season(board_id, season_name)
        if found is None:
            continue  # a board since removed from the game's definitions
        definition, season = found
        board = open_board(definition, season)
        leases.append((board, board.set_totals(totals, live=_on_show(definition, season, now_ms)).lease))
    live.wake_publishers(leases)


def _on_show(definition: BoardDefinition, season: Season, now_ms: int) -> bool:
    return definition.season_at(now_ms) == season


# --- rebuilding ----------------------------------------------------------------------------------------------------


def _every(key: SeasonKey) -> bool:
    return True


def all_points(wanted: Callable[[SeasonKey], bool] = _every) -> Iterator[tuple[SeasonKey, PlayerTotal]]:
    """Every player's points on every season the ledger holds that is `wanted`, read from DynamoDB page by page."""
    paginator = dynamodb().get_paginator("scan")
    pages = paginator.paginate(
        TableName=settings.player_totals_table, ConsistentRead=True, FilterExpression="attribute_exists(seasons)"
    )
    for page in pages:
        for item in page["Items"]:
            ledger = PlayerLedger.of(item)
            if ledger.banned_at_ms is not None:
                continue  # hidden from every board while banned
            for key, (points, reached_at_ms) in ledger.seasons.items():
                if wanted(key):
                    yield key, PlayerTotal(item["user_id"]["S"], ledger.display_name, points, reached_at_ms)


def rebuild(now_ms: int, wanted: Callable[[SeasonKey], bool] = _every, chunk: int = 500) -> dict[SeasonKey, int]:
    """Write the ledger's points to the boards in Redis (every readable season that is `wanted`); they keep only what
    moves a player up, so racing the consumer is safe. The players written per season."""
    written: dict[SeasonKey, int] = defaultdict(int)
    pending: dict[SeasonKey, list[PlayerTotal]] = defaultdict(list)
    for key, player in all_points(wanted):
        if not _readable(key, player.reached_at_ms, now_ms):
            continue
        pending[key].append(player)
        if len(pending[key]) == chunk:
            update_boards({key: pending.pop(key)}, now_ms)
            written[key] += chunk
    update_boards(pending, now_ms)
    for key, players in pending.items():
        written[key] += len(players)
    return dict(written)
