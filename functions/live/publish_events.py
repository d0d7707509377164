"""LiveEventsQueue consumer: sends the queued publishes to the Event API, signed with this function's role. Runs
outside the VPC: no VPC endpoint serves AppSync Event APIs, and a NAT gateway would cost more than the feed."""

from dataclasses import asdict
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from leaderboard import event_api

logger = Logger()


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> None:
    sent = event_api.send(record["body"] for record in event["Records"])
    logger.info("events published", extra=asdict(sent))
