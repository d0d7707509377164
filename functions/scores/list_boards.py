"""GET /v1/boards: every board with its current season, when it started and when it ends (the next reset). Public;
no Redis, no AWS call: the boards are the game's definitions."""

import time

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from leaderboard import http
from leaderboard.game import game
from leaderboard.standings import query

logger = Logger()


@logger.inject_lambda_context
@http.endpoint
def lambda_handler(event: http.Event, context: LambdaContext) -> http.Response:
    query(event.get("queryStringParameters"), ())
    now_ms = int(time.time() * 1000)
    return http.json_response(200, [definition.body(now_ms) for definition in game().boards.values()])
