"""Scores: accepted by the API, applied exactly once by the consumer, kept in DynamoDB, shown on the board.

Accepting (POST /v1/scores) is one DynamoDB transaction: the action records its score and the moment it was
accepted, on the conditions of the contract (the caller's, unscored, unexpired, in range, the total stays under
MAX_TOTAL). Only then is the score sent to SQS and 202 returned.

Applying (the consumer) is one transaction per score: the action is marked applied, on condition that it was not
yet, and the player's total gets the score added and its version incremented. A redelivered message fails that
condition and changes nothing. The totals of the batch's players are then read back and written to the board as
absolute values with their versions; the board ignores anything older than what it holds. So a crash between the
two writes, a duplicate, or a rebuild racing the consumer all converge to the ledger's totals.
"""

import json
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

from leaderboard import live
from leaderboard.actions import PURGE_AFTER_SECONDS
from leaderboard.aws import dynamodb, sqs
from leaderboard.board import Board, PlayerTotal
from leaderboard.config import settings
from leaderboard.identity import Identity
from leaderboard.problems import Conflict, Forbidden, NotFound, ServiceUnavailable, UnprocessableContent

# The largest total a player can hold. Redis keeps scores as doubles, exact up to 2^53 (about 9.007e15).
MAX_TOTAL = 10**15
# An accepted score still unapplied after this long was never queued: its request died between the transaction and
# SendMessage (three times PostScoreFunction's timeout). A retry then queues it again instead of answering 409.
STRANDED_AFTER_MS = 30_000


@dataclass(frozen=True)
class AcceptedScore:
    """A score the API accepted: what travels through the queue."""

    action_id: str
    user_id: str
    display_name: str
    score: int
    accepted_at_ms: int

    def body(self) -> dict[str, Any]:
        return {"action_id": self.action_id, "user_id": self.user_id, "score": self.score, "status": "accepted"}


class PoisonMessage(Exception):
    """A message that can never be applied; it goes to the dead-letter queue after its last receive."""


# --- accepting -----------------------------------------------------------------------------------------------------


def accept(caller: Identity, user_id: str, action_id: str, score: int) -> AcceptedScore:
    """Durably record `score` for the caller's action, then queue it."""
    if user_id != caller.user_id:
        raise Forbidden("Scores can only be posted for yourself.")
    now_ms = int(time.time() * 1000)
    accepted = AcceptedScore(action_id, user_id, caller.display_name, score, now_ms)
    if not 1 <= score <= MAX_TOTAL:
        _refuse(_action(action_id), caller, score, now_ms)  # 404 and 409 come before 422
    client = dynamodb()
    # One token for every attempt: if DynamoDB applied it but the answer was lost, botocore's retry is a no-op.
    token = uuid.uuid4().hex
    for attempt in range(_CONFLICT_RETRIES):
        try:
            client.transact_write_items(TransactItems=_acceptance(accepted), ClientRequestToken=token)
            break
        except client.exceptions.TransactionCanceledException as exc:
            codes, items = _cancellation(exc.response)
            if codes[0] == "ConditionalCheckFailed":
                stranded = _stranded(items[0], caller, score, now_ms)
                if stranded is not None:
                    _send(stranded)  # the consumer applies it once, even if the first send did happen
                    return stranded
                _refuse(items[0], caller, score, now_ms)
            if codes[1] == "ConditionalCheckFailed":
                raise UnprocessableContent(f"This score would take your total past {MAX_TOTAL}.") from None
            if attempt + 1 == _CONFLICT_RETRIES:  # the same items kept being written by others
                raise ServiceUnavailable("The score could not be recorded yet; try again.", retry_after=1) from None
    _enqueue(accepted)
    return accepted


# Transactions touching the same items at once are cancelled (TransactionConflict); a retry usually goes through.
_CONFLICT_RETRIES = 3


def _acceptance(accepted: AcceptedScore) -> Any:
    """The action takes the score; the player's accepted total (applied or still queued) stays within MAX_TOTAL."""
    return [
        {
            "Update": {
                "TableName": settings.actions_table,
                "Key": {"action_id": {"S": accepted.action_id}},
                "UpdateExpression": "SET score = :score, accepted_at = :now REMOVE purge_at",
                "ConditionExpression": (
                    "user_id = :user AND attribute_not_exists(score) AND expires_at > :now_s AND max_score >= :score"
                ),
                "ExpressionAttributeValues": {
                    ":score": {"N": str(accepted.score)},
                    ":now": {"N": str(accepted.accepted_at_ms)},
                    ":now_s": {"N": str(accepted.accepted_at_ms // 1000)},
                    ":user": {"S": accepted.user_id},
                },
                "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
            }
        },
        {
            "Update": {
                "TableName": settings.player_totals_table,
                "Key": {"user_id": {"S": accepted.user_id}},
                "UpdateExpression": "ADD accepted_total :score",
                "ConditionExpression": "attribute_not_exists(accepted_total) OR accepted_total <= :room",
                "ExpressionAttributeValues": {
                    ":score": {"N": str(accepted.score)},
                    ":room": {"N": str(MAX_TOTAL - accepted.score)},
                },
            }
        },
    ]


def _refuse(action: dict[str, Any] | None, caller: Identity, score: int, now_ms: int) -> None:
    """Raise the contract's answer for an action that cannot take this score (first applicable wins)."""
    if action is None or action["user_id"]["S"] != caller.user_id:
        raise NotFound("You have no such action.")
    if "score" in action:
        raise Conflict("This action already has a score.")
    if int(action["expires_at"]["N"]) <= now_ms // 1000:
        raise Conflict("This action has expired.")
    max_score = int(action["max_score"]["N"])
    if not 1 <= score <= max_score:
        raise UnprocessableContent(f"The score must be a whole number from 1 to {max_score}.")


def _stranded(action: dict[str, Any] | None, caller: Identity, score: int, now_ms: int) -> AcceptedScore | None:
    """The score this action accepted, if it is the same score by the same player and was never applied."""
    if action is None or action["user_id"]["S"] != caller.user_id or "applied_at" in action:
        return None
    if action.get("score", {}).get("N") != str(score):
        return None
    accepted_at_ms = int(action["accepted_at"]["N"])
    if now_ms - accepted_at_ms < STRANDED_AFTER_MS:
        return None
    return AcceptedScore(action["action_id"]["S"], caller.user_id, caller.display_name, score, accepted_at_ms)


def _action(action_id: str) -> dict[str, Any] | None:
    response = dynamodb().get_item(
        TableName=settings.actions_table, Key={"action_id": {"S": action_id}}, ConsistentRead=True
    )
    return response.get("Item")


def _send(accepted: AcceptedScore) -> None:
    sqs().send_message(QueueUrl=settings.scores_queue_url, MessageBody=json.dumps(asdict(accepted)))


def _enqueue(accepted: AcceptedScore) -> None:
    """Send the accepted score to the consumer; if SQS fails, take the acceptance back so the client can retry."""
    try:
        _send(accepted)
    except Exception as exc:
        if _take_back(accepted):
            raise ServiceUnavailable("The score could not be queued; nothing was recorded. Try again.") from exc
        # The send did go through and the consumer already applied it: the score is accepted after all.


def _take_back(accepted: AcceptedScore) -> bool:
    """Undo an acceptance that was never queued; False if the consumer applied it meanwhile (it was queued)."""
    client = dynamodb()
    try:
        client.transact_write_items(
            ClientRequestToken=uuid.uuid4().hex,
            TransactItems=[
                {
                    "Update": {
                        "TableName": settings.actions_table,
                        "Key": {"action_id": {"S": accepted.action_id}},
                        "UpdateExpression": "REMOVE score, accepted_at SET purge_at = expires_at + :purge",
                        "ConditionExpression": "accepted_at = :accepted AND attribute_not_exists(applied_at)",
                        "ExpressionAttributeValues": {
                            ":accepted": {"N": str(accepted.accepted_at_ms)},
                            ":purge": {"N": str(PURGE_AFTER_SECONDS)},
                        },
                    }
                },
                {
                    "Update": {
                        "TableName": settings.player_totals_table,
                        "Key": {"user_id": {"S": accepted.user_id}},
                        "UpdateExpression": "ADD accepted_total :minus",
                        "ExpressionAttributeValues": {":minus": {"N": str(-accepted.score)}},
                    }
                },
            ],
        )
    except client.exceptions.TransactionCanceledException:
        return False
    return True


# --- applying ------------------------------------------------------------------------------------------------------


def parse_message(body: str) -> AcceptedScore:
    """The accepted score a queue message carries; PoisonMessage if it carries none."""
    try:
        fields = json.loads(body)
        accepted = AcceptedScore(**fields)
    except (ValueError, TypeError) as exc:
        raise PoisonMessage("not an accepted score") from exc
    if not all(isinstance(value, str) for value in (accepted.action_id, accepted.user_id, accepted.display_name)):
        raise PoisonMessage("not an accepted score")
    if not all(type(value) is int for value in (accepted.score, accepted.accepted_at_ms)):
        raise PoisonMessage("not an accepted score")
    return accepted


def commit(accepted: AcceptedScore) -> None:
    """Add the score to the player's total in DynamoDB, exactly once. A repeat is a no-op; PoisonMessage if the
    action never accepted this score."""
    client = dynamodb()
    try:
        client.transact_write_items(
            TransactItems=[_mark_applied(accepted), _add_to_total(accepted, in_order=True)],
            ClientRequestToken=uuid.uuid4().hex,  # a retried call after a lost answer is a no-op
        )
    except client.exceptions.TransactionCanceledException as exc:
        codes, items = _cancellation(exc.response)
        if codes[0] == "ConditionalCheckFailed":
            if _already_applied(items[0], accepted):
                return
            raise PoisonMessage("the action did not accept this score") from None
        if codes[1] == "ConditionalCheckFailed":
            # A later score of this player was applied first (SQS does not keep order): add, keep its moment.
            client.transact_write_items(
                TransactItems=[_mark_applied(accepted), _add_to_total(accepted, in_order=False)],
                ClientRequestToken=uuid.uuid4().hex,
            )
            return
        raise


def _cancellation(response: Any) -> tuple[list[str | None], list[dict[str, Any] | None]]:
    """Why each item of a cancelled two-item transaction failed ("None" = it did not), with its old item."""
    reasons = list(response.get("CancellationReasons") or [{}, {}])
    return [reason.get("Code") for reason in reasons], [reason.get("Item") for reason in reasons]


def _mark_applied(accepted: AcceptedScore) -> Any:
    return {
        "Update": {
            "TableName": settings.actions_table,
            "Key": {"action_id": {"S": accepted.action_id}},
            "UpdateExpression": "SET applied_at = :now",
            "ConditionExpression": "attribute_not_exists(applied_at) AND score = :score AND accepted_at = :accepted",
            "ExpressionAttributeValues": {
                ":now": {"N": str(int(time.time() * 1000))},
                ":score": {"N": str(accepted.score)},
                ":accepted": {"N": str(accepted.accepted_at_ms)},
            },
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }
    }


def _add_to_total(accepted: AcceptedScore, in_order: bool) -> Any:
    values = {
        ":score": {"N": str(accepted.score)},
        ":one": {"N": "1"},
        ":name": {"S": accepted.display_name},
    }
    update: dict[str, Any] = {
        "TableName": settings.player_totals_table,
        "Key": {"user_id": {"S": accepted.user_id}},
        "UpdateExpression": "ADD total_score :score, version :one SET display_name = :name",
        "ExpressionAttributeValues": values,
    }
    if in_order:
        # The total was reached when its latest score was accepted: ties on the board go to the earlier moment.
        update["UpdateExpression"] += ", reached_at = :accepted"
        update["ConditionExpression"] = "attribute_not_exists(reached_at) OR reached_at <= :accepted"
        values[":accepted"] = {"N": str(accepted.accepted_at_ms)}
    return {"Update": update}


def _already_applied(action: dict[str, Any] | None, accepted: AcceptedScore) -> bool:
    return (
        action is not None
        and "applied_at" in action
        and action.get("score", {}).get("N") == str(accepted.score)
        and action.get("accepted_at", {}).get("N") == str(accepted.accepted_at_ms)
    )


def totals_of(user_ids: Iterable[str]) -> list[PlayerTotal]:
    """The players' totals as DynamoDB holds them now (strongly consistent)."""
    keys = [{"user_id": {"S": user_id}} for user_id in sorted(set(user_ids))]
    totals: list[PlayerTotal] = []
    table = settings.player_totals_table
    for start in range(0, len(keys), 100):  # BatchGetItem takes 100 keys at a time
        request: Any = {table: {"Keys": keys[start : start + 100], "ConsistentRead": True}}
        while request:
            response = dynamodb().batch_get_item(RequestItems=request)
            totals.extend(_player_total(item) for item in response["Responses"].get(table, []))
            request = response.get("UnprocessedKeys") or None
    return totals


def update_board(board: Board, user_ids: Iterable[str]) -> None:
    """Bring the board up to the ledger for these players, and have the change published to the live feed."""
    live.wake_publisher(board, board.set_totals(totals_of(user_ids)).lease)


# --- rebuilding ----------------------------------------------------------------------------------------------------


def all_totals() -> Iterator[PlayerTotal]:
    """Every player's applied total, read from DynamoDB page by page. A player whose first score is accepted but not
    yet applied has a record (its accepted_total) and no total yet: nothing for the board."""
    paginator = dynamodb().get_paginator("scan")
    pages = paginator.paginate(
        TableName=settings.player_totals_table, ConsistentRead=True, FilterExpression="attribute_exists(version)"
    )
    for page in pages:
        yield from (_player_total(item) for item in page["Items"])


def rebuild(board: Board, chunk: int = 500) -> int:
    """Write every total in DynamoDB to the board (version-gated, so racing the consumer is safe); the count."""
    written, pending = 0, []
    for player in all_totals():
        pending.append(player)
        if len(pending) == chunk:
            live.wake_publisher(board, board.set_totals(pending).lease)
            written, pending = written + len(pending), []
    live.wake_publisher(board, board.set_totals(pending).lease)
    return written + len(pending)


def _player_total(item: dict[str, Any]) -> PlayerTotal:
    return PlayerTotal(
        user_id=item["user_id"]["S"],
        display_name=item["display_name"]["S"],
        total=int(item["total_score"]["N"]),
        version=int(item["version"]["N"]),
        reached_at_ms=int(item.get("reached_at", {"N": "0"})["N"]),
    )
