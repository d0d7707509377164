"""GET /v1/boards/{board}/scores/{user_id}[?season=]: a player's rank and score on a season of a board (the current
one by default), with up to 4 players above and 4 below. Public."""

import time

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from leaderboard import http
from leaderboard.problems import NotFound
from leaderboard.read_limits import limit_reads
from leaderboard.standings import query, season_standings

logger = Logger()


@logger.inject_lambda_context
@http.endpoint
def lambda_handler(event: http.Event, context: LambdaContext) -> http.Response:
    params = query(event.get("queryStringParameters"), ("season",))
    limit_reads(http.source_ip(event))
    path = event.get("pathParameters") or {}
    season = season_standings(path.get("board", ""), params.get("season"), int(time.time() * 1000))
    found = season.standing(path.get("user_id", ""))
    if found is None:
        raise NotFound("This player has no score in this season.")
    standing, around = found
    body = {**standing.body(), "around": [player.body() for player in around], **season.labels()}
    return http.json_response(200, body)
