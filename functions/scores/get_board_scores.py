"""GET /v1/boards/{board}/scores[?season=&offset=&limit=]: a page of a season's standings in rank order (the current
season by default; `limit` at most 100, default 10). Public."""

import time

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from leaderboard import http
from leaderboard.read_limits import limit_reads
from leaderboard.standings import page_bounds, query, season_standings

logger = Logger()


@logger.inject_lambda_context
@http.endpoint
def lambda_handler(event: http.Event, context: LambdaContext) -> http.Response:
    params = query(event.get("queryStringParameters"), ("season", "offset", "limit"))
    offset, limit = page_bounds(params)
    limit_reads(http.source_ip(event))
    board_id = (event.get("pathParameters") or {}).get("board", "")
    season = season_standings(board_id, params.get("season"), int(time.time() * 1000))
    items = [standing.body() for standing in season.page(offset, limit)]
    return http.json_response(200, {**season.labels(), "offset": offset, "limit": limit, "items": items})
