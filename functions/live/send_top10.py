"""WebSocket route `top10` ({"action":"top10"}): the current board, to the sender alone (through the route
response). What a client sends is never passed on to anyone."""

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from leaderboard import messages
from leaderboard.board import BoardUnavailable, board

logger = Logger()


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    try:
        return {"statusCode": 200, "body": messages.top10_message(board().snapshot())}
    except BoardUnavailable as unavailable:
        return {"statusCode": 200, "body": messages.error_message(unavailable)}
