"""AWS SDK clients, created on first use and kept for warm invocations.

boto3 is imported here and only when a client is first needed: functions that never call AWS through the
SDK (the authorizer) never pay its ~200 ms import.
"""

import random
import time
from functools import cache
from typing import TYPE_CHECKING, Any

from leaderboard.problems import ServiceUnavailable

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_sqs import SQSClient


@cache
def dynamodb() -> "DynamoDBClient":
    """The DynamoDB client (region, credentials and endpoint from the standard AWS environment), with short timeouts:
    botocore's defaults (60 s, and retries with backoff up to 20 s under throttling) outlast a function's 10 s, and
    API Gateway would then answer a bare 500 instead of our 503."""
    import boto3  # deferred on purpose, see the module docstring
    from botocore.config import Config

    config = Config(connect_timeout=1, read_timeout=2, retries={"mode": "standard", "max_attempts": 3})
    return boto3.client("dynamodb", config=config)


# DynamoDB leaves keys unprocessed when it throttles a batch: ask again after these pauses (seconds, doubling as AWS
# advises), then give up: asking at once, and for as long as it throttles, would spin until the function's timeout.
_UNPROCESSED_PAUSES = (0.05, 0.1, 0.2, 0.4)


def batch_get(request: Any) -> dict[str, list[dict[str, Any]]]:
    """A BatchGetItem's items per table, asking again (backing off) for what DynamoDB left unprocessed;
    ServiceUnavailable if it still leaves some after a few tries."""
    found: dict[str, list[dict[str, Any]]] = {}
    pauses = iter(_UNPROCESSED_PAUSES)
    while request:
        response = dynamodb().batch_get_item(RequestItems=request)
        for table, items in response["Responses"].items():
            found.setdefault(table, []).extend(items)
        request = response.get("UnprocessedKeys") or None
        if request:
            pause = next(pauses, None)
            if pause is None:
                raise ServiceUnavailable("The service is busy; try again.", retry_after=1)
            time.sleep(random.uniform(pause / 2, pause))  # noqa: S311 - jitter, not security
    return found


@cache
def sqs() -> "SQSClient":
    """The SQS client, with short timeouts: a send sits on a request's or a consumer's path."""
    import boto3  # deferred on purpose, see the module docstring
    from botocore.config import Config

    # At most about 6 s in all: well within the 10 s of a request or of the consumer.
    config = Config(connect_timeout=1, read_timeout=2, retries={"mode": "standard", "max_attempts": 2})
    return boto3.client("sqs", config=config)
