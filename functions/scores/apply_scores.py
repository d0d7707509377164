"""The ScoresQueue consumer: brings the boards in Redis up to the players' ledgers, as their changes arrive.

A message says "this player's item reaches `rev` on these seasons"; it is sent just before the write it announces,
so the consumer reads the players (one request for the batch) and waits briefly for writes still on their way. A
message whose write has not landed goes back to the queue; one older than any write could be is dropped (its request
died before writing, or retried with another message). Redis down: the batch fails (within a second) and SQS delivers
it again. A message that is not a change at all fails alone (partial batch response) and reaches the dead-letter queue
after its last receive, while the rest of the batch is applied.
"""

import time
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.data_classes import SQSEvent
from aws_lambda_powertools.utilities.typing import LambdaContext

from leaderboard import board_sync, scores

logger = Logger()


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    now_ms = int(time.time() * 1000)
    poison: list[str] = []
    batch: dict[str, scores.PlayerChanged] = {}
    for record in SQSEvent(event).records:
        try:
            batch[record.message_id] = scores.PlayerChanged.parse(record.body)
        except scores.PoisonMessage:
            poison.append(record.message_id)
    if poison:
        logger.warning("messages that can never be applied", extra={"message_ids": poison})
    synced = board_sync.sync(batch, now_ms)
    if synced.unwritten:
        logger.info("changes whose write never happened", extra={"message_ids": synced.unwritten})
    board_sync.update_boards(synced.points, now_ms)
    logger.info("batch applied", extra={"records": len(event["Records"]), "seasons": len(synced.points)})
    failed = poison + synced.waiting  # delivered again: poison until the dead-letter queue, the others once written
    return {"batchItemFailures": [{"itemIdentifier": message_id} for message_id in failed]}
