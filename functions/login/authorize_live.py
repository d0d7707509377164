"""The Event API's Lambda authorizer (connect and subscribe on the live feed).

The authorization value is a player's access token, verified exactly as the HTTP API's authorizer verifies it, or
the literal `anonymous`: the top 10 is public, as GET /v1/scores is. The answer depends on the value alone, never on
the operation or channel, so it is right whatever AppSync caches it under; which channel a caller may subscribe to is
the onSubscribe handler's decision (functions/live/on_subscribe.py). Like the HTTP authorizer, it imports no AWS SDK.
"""

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from leaderboard.tokens import InvalidToken, bearer_token, verify_caller

logger = Logger()

ANONYMOUS = "anonymous"
# As the HTTP API caches its authorizer's answers: a token is honoured at most 600 + 30 + 240 s after it was issued.
TOKEN_ANSWER_SECONDS = 240
ANONYMOUS_ANSWER_SECONDS = 3600


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    value = str(event.get("authorizationToken") or "").strip()
    if value == ANONYMOUS:
        return {"isAuthorized": True, "handlerContext": {}, "ttlOverride": ANONYMOUS_ANSWER_SECONDS}
    # The contract's value is the bare token; `Bearer <token>`, as sent to the HTTP API, is taken too.
    token = bearer_token(value) or value
    try:
        player = verify_caller(token)
    except InvalidToken as refused:
        logger.info("access token refused", extra={"reason": refused.reason})
        return {"isAuthorized": False}
    return {"isAuthorized": True, "handlerContext": player.as_context(), "ttlOverride": TOKEN_ANSWER_SECONDS}
