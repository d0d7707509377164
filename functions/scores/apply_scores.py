"""The ScoresQueue consumer: applies accepted scores to the ledger exactly once, then to the boards.

The ledger in DynamoDB is written first. Redis down: the batch then fails (within a second) and SQS delivers it again;
the redelivered scores are already counted and only go to the boards. A message that can never be applied fails alone
(partial batch response) and reaches the dead-letter queue after its last receive; so do a player's messages when
their write fails (throttled, or changed by others too often), while the rest of the batch is applied.
"""

import time
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.data_classes import SQSEvent
from aws_lambda_powertools.utilities.typing import LambdaContext

from leaderboard import scores

logger = Logger()


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    now_ms = int(time.time() * 1000)
    failed: list[str] = []
    batch: dict[str, scores.AcceptedScore] = {}
    for record in SQSEvent(event).records:
        try:
            batch[record.message_id] = scores.parse_message(record.body)
        except scores.PoisonMessage:
            failed.append(record.message_id)
    committed = scores.commit(batch, now_ms)
    failed += committed.poison
    if failed:
        logger.warning("messages that can never be applied", extra={"message_ids": failed})
    failed += committed.failed  # delivered again: their players' writes failed this time
    scores.update_boards(committed.points, now_ms)
    logger.info("batch applied", extra={"records": len(event["Records"]), "seasons": len(committed.points)})
    return {"batchItemFailures": [{"itemIdentifier": message_id} for message_id in failed]}
