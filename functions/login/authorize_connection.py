"""The WebSocket API's $connect authorizer: the access token comes as `?token=` (browsers cannot set headers on a
WebSocket handshake).

WebSocket authorizers answer with an IAM policy. A bad token gets Deny, which API Gateway turns into 403; a missing
one never reaches this function (API Gateway answers 401). Like the HTTP authorizer, it imports no AWS SDK.
"""

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from leaderboard.tokens import InvalidToken, verify_caller

logger = Logger()


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    token = (event.get("queryStringParameters") or {}).get("token", "")
    try:
        player = verify_caller(token)
    except InvalidToken as refused:
        logger.info("access token refused", extra={"reason": refused.reason})
        return _policy("anonymous", "Deny", event["methodArn"])
    return _policy(player.user_id, "Allow", event["methodArn"]) | {"context": player.as_context()}


def _policy(principal: str, effect: str, resource: str) -> dict[str, Any]:
    statement = {"Action": "execute-api:Invoke", "Effect": effect, "Resource": resource}
    return {"principalId": principal, "policyDocument": {"Version": "2012-10-17", "Statement": [statement]}}
