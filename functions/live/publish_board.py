"""Publishes board changes to the live feed while something waits, at the rate the budget allows (see
leaderboard/live.py): it builds the events and queues them on LiveEventsQueue for PublishEventsFunction.

Woken by BoardChangesQueue (a wake-up carries the publishing lease; one publisher holds it at a time), and once a
minute by a schedule, the safety net for a wake-up that was lost."""

from dataclasses import asdict
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from leaderboard import live
from leaderboard.board import board

logger = Logger()


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> None:
    if "Records" not in event:  # the schedule
        published = live.publish_if_behind(board(), context.get_remaining_time_in_millis)
        logger.info("safety net", extra=asdict(published))
        return
    for record in event["Records"]:  # BatchSize 1: one wake-up, one lease
        published = live.publish_changes(board(), live.lease_of(record["body"]), context.get_remaining_time_in_millis)
        logger.info("board published", extra=asdict(published))
