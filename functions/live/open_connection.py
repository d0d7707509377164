"""WebSocket $connect: the authorizer let the player in; remember the connection so board changes reach it."""

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from leaderboard import connections
from leaderboard.identity import Identity

logger = Logger()


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = event["requestContext"]
    connections.open_connection(request["connectionId"], Identity.from_context(request["authorizer"]))
    return {"statusCode": 200}
