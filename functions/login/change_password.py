"""POST /v1/password: change the caller's password, given the current one, and end every session. Behind the
authorizer."""

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from leaderboard import auth, http
from leaderboard.bodies import ChangePasswordBody

logger = Logger()


@logger.inject_lambda_context
@http.endpoint
def lambda_handler(event: http.Event, context: LambdaContext) -> http.Response:
    caller = http.caller(event)
    body = http.parse_body(event, ChangePasswordBody)
    auth.change_password(caller, body.current_password, body.new_password, http.source_ip(event))
    logger.info("password changed; every session ended", extra={"user_id": caller.user_id})
    return http.json_response(204)
