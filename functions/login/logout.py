"""POST /v1/logout: revoke the session (the refresh token's whole family). Behind the authorizer."""

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from leaderboard import auth, http
from leaderboard.bodies import LogoutBody

logger = Logger()


@logger.inject_lambda_context
@http.endpoint
def lambda_handler(event: http.Event, context: LambdaContext) -> http.Response:
    caller = http.caller(event)
    body = http.parse_body(event, LogoutBody)
    auth.logout(body.refresh_token, caller.user_id)
    logger.info("logged out", extra={"user_id": caller.user_id})
    return http.json_response(204)
