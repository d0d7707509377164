"""GET /v1/scores: the top 10 of the `global` board (all time), rank 1 first. Public, limited per client address
(read_limits.py); two Redis round trips, the limit's counter and the board."""

import time

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from leaderboard import http
from leaderboard.board import TOP
from leaderboard.game import ALL_TIME_BOARD
from leaderboard.read_limits import limit_reads
from leaderboard.standings import season_standings

logger = Logger()


@logger.inject_lambda_context
@http.endpoint
def lambda_handler(event: http.Event, context: LambdaContext) -> http.Response:
    limit_reads(http.source_ip(event))
    current = season_standings(ALL_TIME_BOARD, None, int(time.time() * 1000))
    return http.json_response(200, [standing.body() for standing in current.page(0, TOP)])
