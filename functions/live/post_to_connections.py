"""FanoutQueue consumer: posts one chunk of a board change to its connections, in parallel, and forgets the
connections that are gone (410). Runs outside the VPC: the @connections API is not reachable through a VPC endpoint."""

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from leaderboard import live

logger = Logger()


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> None:
    for record in event["Records"]:
        delivery = live.deliver(live.Chunk.from_body(record["body"]))
        logger.info("chunk posted", extra={"sent": delivery.sent, "gone": delivery.gone, "failed": delivery.failed})
