"""GET /v1/scores/{user_id}: a player's rank and score, with up to 4 players above and 4 below. Public."""

import re

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from leaderboard import http
from leaderboard.board import board
from leaderboard.problems import NotFound

logger = Logger()
_USER_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@logger.inject_lambda_context
@http.endpoint
def lambda_handler(event: http.Event, context: LambdaContext) -> http.Response:
    user_id = (event.get("pathParameters") or {}).get("user_id", "")
    found = board().standing(user_id) if _USER_ID.match(user_id) else None
    if found is None:
        raise NotFound("This player has no score yet.")
    standing, around = found
    return http.json_response(200, {**standing.body(), "around": [player.body() for player in around]})
