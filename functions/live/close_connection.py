"""WebSocket $disconnect: forget the connection (API Gateway calls this once it is closed, on a best-effort basis;
the connection's TTL and the 410s of the publisher catch the ones it misses)."""

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from leaderboard import connections

logger = Logger()


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    connections.close_connection(event["requestContext"]["connectionId"])
    return {"statusCode": 200}
