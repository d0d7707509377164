"""The HTTP API's Lambda authorizer (payload 2.0, simple responses).

It runs on nearly every request, so it imports no AWS SDK: the key comes through the Secrets extension.
It never raises for a bad token (API Gateway would answer 500): it denies, and API Gateway answers 403.
"""

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from leaderboard.tokens import InvalidToken, bearer_token, verify_caller

logger = Logger()


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    authorization = (event.get("headers") or {}).get("authorization", "")
    try:
        identity = verify_caller(bearer_token(authorization))
    except InvalidToken as refused:
        logger.info("access token refused", extra={"reason": refused.reason})
        return {"isAuthorized": False}
    return {"isAuthorized": True, "context": identity.as_context()}
