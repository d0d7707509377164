"""POST /v1/scores: record a finished action's score, durably, and queue it for the board.

An `Idempotency-Key` header makes retries safe: the same key (per player, kept 24 hours) with the same body gets
the first response again; with another body, 422.
"""

from functools import cache
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError,
    IdempotencyValidationError,
)
from aws_lambda_powertools.utilities.typing import LambdaContext

from leaderboard import http, scores
from leaderboard.bodies import PostScoreBody
from leaderboard.config import settings
from leaderboard.problems import Conflict, UnprocessableContent

logger = Logger()

IDEMPOTENCY = IdempotencyConfig(
    # The key is the caller's id with their header: no header, no idempotency; one player cannot replay another's.
    event_key_jmespath=(
        'headers."idempotency-key" && [requestContext.authorizer.lambda.user_id, headers."idempotency-key"]'
    ),
    payload_validation_jmespath="body",
    raise_on_no_idempotency_key=False,
    expires_after_seconds=24 * 3600,
)


@logger.inject_lambda_context
@http.endpoint
def lambda_handler(event: http.Event, context: LambdaContext) -> http.Response:
    IDEMPOTENCY.register_lambda_context(context)
    try:
        response: http.Response = _idempotent_accept()(event=event, context=context)
        return response
    except IdempotencyValidationError:
        raise UnprocessableContent("This Idempotency-Key was already used with another request body.") from None
    except IdempotencyAlreadyInProgressError:
        raise Conflict("A request with this Idempotency-Key is still in progress; retry shortly.") from None


def _accept(event: http.Event, context: Any = None) -> http.Response:
    # Problems are raised, not returned: Powertools then keeps no record, so only an accepted score (202) is
    # replayed for its key, and a refusal or a 503 can be retried with the same key.
    caller = http.caller(event)
    body = http.parse_body(event, PostScoreBody)
    accepted = scores.accept(caller, body.user_id, body.action_id, body.score)
    logger.info("score accepted", extra={"user_id": caller.user_id, "action_id": accepted.action_id})
    return http.json_response(202, accepted.body())


@cache
def _idempotent_accept() -> Any:
    # Built on first use: the table name comes from the environment, which is read at run time, not import.
    persistence = DynamoDBPersistenceLayer(table_name=settings.idempotency_table)
    return idempotent_function(data_keyword_argument="event", persistence_store=persistence, config=IDEMPOTENCY)(
        _accept
    )
