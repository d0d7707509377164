"""POST /v1/users: create an account."""

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from leaderboard import auth, http, rate_limits
from leaderboard.bodies import RegisterBody

logger = Logger()


@logger.inject_lambda_context
@http.endpoint
def lambda_handler(event: http.Event, context: LambdaContext) -> http.Response:
    body = http.parse_body(event, RegisterBody)
    rate_limits.limit_registrations(http.source_ip(event))
    user = auth.register(body.username, body.password, body.display_name)
    logger.info("account created", extra={"user_id": user.user_id})
    return http.json_response(201, user.public())
