"""POST /v1/token/refresh: spend a refresh token for a new access token and refresh token."""

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from leaderboard import auth, http
from leaderboard.bodies import RefreshBody

logger = Logger()


@logger.inject_lambda_context
@http.endpoint
def lambda_handler(event: http.Event, context: LambdaContext) -> http.Response:
    body = http.parse_body(event, RefreshBody)
    session = auth.refresh(body.refresh_token, http.source_ip(event))
    logger.info("tokens refreshed", extra={"user_id": session.user_id})
    return http.json_response(200, session.body(), headers={"Cache-Control": "no-store"})
