"""The ScoresQueue consumer: applies accepted scores to the totals exactly once, then to the board.

The totals in DynamoDB are written first: they are the ledger. Redis down: the batch then fails (within a second)
and SQS delivers it again; the redelivered scores are already counted and only go to the board. A message that can
never be applied fails alone (partial batch response) and reaches the dead-letter queue after its last receive.
"""

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from leaderboard import scores
from leaderboard.board import board

logger = Logger()
# A batch whose every record failed is answered like any other: the failures are listed, nothing is raised.
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    players: set[str] = set()

    def apply(record: SQSRecord) -> None:
        accepted = scores.parse_message(record.body)
        scores.commit(accepted)
        players.add(accepted.user_id)

    response = process_partial_response(event=event, record_handler=apply, processor=processor, context=context)
    scores.update_board(board(), players)
    logger.info("batch applied", extra={"records": len(event["Records"]), "players": len(players)})
    return dict(response)
