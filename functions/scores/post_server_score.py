"""POST /v1/server/scores: a score the studio's own game server posts for a player.

IAM-authorized (SigV4, no player token): only the studio's backends hold the permission. The score skips the limits on
what players post themselves, and keeps everything else: exactly once per player and `action_id`, the queue, the
boards (including those that take server scores only).
"""

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from leaderboard import http, scores
from leaderboard.bodies import ServerScoreBody

logger = Logger()


@logger.inject_lambda_context
@http.endpoint
def lambda_handler(event: http.Event, context: LambdaContext) -> http.Response:
    server = http.iam_caller(event)
    body = http.parse_body(event, ServerScoreBody)
    scores.accept_from_server(body.user_id, body.type, body.action_id, body.score)
    logger.info("server score accepted", extra={"user_id": body.user_id, "action_id": body.action_id, "by": server})
    return http.json_response(
        202, {"action_id": body.action_id, "user_id": body.user_id, "score": body.score, "status": "accepted"}
    )
