"""POST /v1/scores: record a finished action's score in the player's ledger, exactly once, and queue it for the board.

An `Idempotency-Key` header makes retries safe: the same key (per player, kept 24 hours) with the same body gets
the first answer again; with another body, 422. It is written with the score, in the same request.
"""

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from leaderboard import http, scores
from leaderboard.bodies import PostScoreBody

logger = Logger()


@logger.inject_lambda_context
@http.endpoint
def lambda_handler(event: http.Event, context: LambdaContext) -> http.Response:
    caller = http.caller(event)
    body = http.parse_body(event, PostScoreBody)
    key = (event.get("headers") or {}).get("idempotency-key")
    accepted = scores.accept(caller, body.user_id, body.action_id, body.score, idempotency_key=key)
    logger.debug("score accepted", extra={"user_id": caller.user_id, "action_id": accepted.action_id})
    return http.json_response(202, accepted.body())
