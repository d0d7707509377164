"""POST /v1/logout/everywhere: end every session of the caller (each refresh token stops working). Behind the
authorizer; no body."""

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from leaderboard import auth, http

logger = Logger()


@logger.inject_lambda_context
@http.endpoint
def lambda_handler(event: http.Event, context: LambdaContext) -> http.Response:
    caller = http.caller(event)
    auth.logout_everywhere(caller.user_id)
    logger.info("logged out everywhere", extra={"user_id": caller.user_id})
    return http.json_response(204)
