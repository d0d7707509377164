"""GET /v1/scores/{user_id}: a player's rank and score on the `global` board, with up to 4 players above and 4 below.
Public."""

import time

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from leaderboard import http
from leaderboard.game import ALL_TIME_BOARD
from leaderboard.problems import NotFound
from leaderboard.read_limits import limit_reads
from leaderboard.standings import season_standings

logger = Logger()


@logger.inject_lambda_context
@http.endpoint
def lambda_handler(event: http.Event, context: LambdaContext) -> http.Response:
    limit_reads(http.source_ip(event))
    user_id = (event.get("pathParameters") or {}).get("user_id", "")
    found = season_standings(ALL_TIME_BOARD, None, int(time.time() * 1000)).standing(user_id)
    if found is None:
        raise NotFound("This player has no score yet.")
    standing, around = found
    return http.json_response(200, {**standing.body(), "around": [player.body() for player in around]})
