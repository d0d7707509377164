"""POST /v1/login: a username and password (and, optionally, the device token of an earlier login) for an access
token, a refresh token and a device token."""

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from leaderboard import auth, http
from leaderboard.bodies import LoginBody

logger = Logger()


@logger.inject_lambda_context
@http.endpoint
def lambda_handler(event: http.Event, context: LambdaContext) -> http.Response:
    body = http.parse_body(event, LoginBody)
    session = auth.login(body.username, body.password, http.source_ip(event), body.device_token)
    logger.info("logged in", extra={"user_id": session.user_id})
    return http.json_response(200, session.body(), headers={"Cache-Control": "no-store"})
