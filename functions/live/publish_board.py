"""Publishes board changes to the live feed while something waits, at the rate the budget allows (see
leaderboard/live.py): it builds the events and queues them on LiveEventsQueue for PublishEventsFunction.

Woken by BoardChangesQueue (a wake-up names the board's season and carries its publishing lease; one publisher holds
it at a time), and once a minute by a schedule, the safety net for a wake-up that was lost: it looks at the current
season of every board and wakes a publisher for each one left behind."""

import time
from dataclasses import asdict
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from leaderboard import live
from leaderboard.board import open_board
from leaderboard.game import game

logger = Logger()


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> None:
    if "Records" not in event:  # the schedule: a wake-up for each board left behind, each its own invocation
        now_ms = int(time.time() * 1000)
        for shown in game().boards.values():
            if live.wake_if_behind(open_board(shown, shown.season_at(now_ms))):
                logger.info("safety net: a board left behind", extra={"board": shown.id})
        return
    for record in event["Records"]:  # BatchSize 1: one wake-up, one lease
        wake_up = live.WakeUp.of(record["body"])
        found = game().season(wake_up.board, wake_up.season)
        if found is None:
            logger.warning("a wake-up for no board of this stack", extra={"board": wake_up.board})
            continue
        definition, season = found
        board = open_board(definition, season)
        published = live.publish_changes(board, wake_up.lease, context.get_remaining_time_in_millis)
        logger.info("board published", extra={"board": definition.id, "season": season.name, **asdict(published)})
