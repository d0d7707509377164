"""RebuildBoard: restore the board in Redis from the totals in DynamoDB, e.g. after Redis came back empty.

Safe while scores keep arriving: every write carries its total's version and the board keeps the newest.
"""

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from leaderboard import scores
from leaderboard.board import board

logger = Logger()


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    players = scores.rebuild(board())
    logger.info("board rebuilt", extra={"players": players})
    return {"players": players}
