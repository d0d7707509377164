"""POST /v1/moderation/removals: an operator takes a player's points off one season of a board (IAM, audited)."""

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from leaderboard import http, moderation
from leaderboard.bodies import RemovePointsBody

logger = Logger()


@logger.inject_lambda_context
@http.endpoint
def lambda_handler(event: http.Event, context: LambdaContext) -> http.Response:
    operator = http.iam_caller(event)
    body = http.parse_body(event, RemovePointsBody)
    decision = moderation.remove_points(operator, body.user_id, body.board, body.season, body.reason)
    return http.json_response(200, decision.body())
