"""POST /v1/moderation/unbans: an operator lifts a player's ban; their standings are back on every board (IAM,
audited)."""

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from leaderboard import http, moderation
from leaderboard.bodies import BanBody

logger = Logger()


@logger.inject_lambda_context
@http.endpoint
def lambda_handler(event: http.Event, context: LambdaContext) -> http.Response:
    operator = http.iam_caller(event)
    body = http.parse_body(event, BanBody)
    return http.json_response(200, moderation.unban(operator, body.user_id, body.reason).body())
