"""GET /v1/scores: the top 10, rank 1 first. Public; one Redis round trip."""

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from leaderboard import http
from leaderboard.board import board

logger = Logger()


@logger.inject_lambda_context
@http.endpoint
def lambda_handler(event: http.Event, context: LambdaContext) -> http.Response:
    return http.json_response(200, [standing.body() for standing in board().top()])
