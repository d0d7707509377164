"""Scores: accepted by the API, applied exactly once by the consumer, kept in DynamoDB, shown on the boards.

The ledger is one item per player (PlayerTotalsTable): what they have accepted (`accepted_total`, and `pending`, the
actions accepted and not applied yet) and their points on every board and season still readable (`seasons`, e.g.
`weekly/2026-W49` -> [points, the moment they were reached]). However many boards a score feeds, it writes that one
item: DynamoDB bills a write per item (two in a transaction), so adding boards adds no writes while the item stays
under 1 KB.

Accepting (POST /v1/scores) is one transaction: the action records its score and the moment it was accepted, on the
conditions of the contract (the caller's, unscored, unexpired, in range), and the player's item records it as pending,
on condition that the total stays under MAX_TOTAL. Only then is the score sent to SQS and 202 returned.

Applying (the consumer) reads the batch's players and actions in one request, then per player one conditional write:
every pending score of the batch is added to every board it feeds, in the season in which it was accepted, and leaves
`pending`, on condition that nobody changed the player meanwhile (`rev`). A redelivered score is no longer pending and
changes nothing. The players' points are then written to the boards in Redis, which keep a write only if it moves the
player up: a crash between the two writes, a duplicate, or a rebuild racing the consumer all converge to the ledger.
"""

import json
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from aws_lambda_powertools import Logger
from botocore.exceptions import BotoCoreError, ClientError

from leaderboard import live
from leaderboard.actions import PURGE_AFTER_SECONDS
from leaderboard.aws import dynamodb, sqs
from leaderboard.board import Board, PlayerTotal, open_board
from leaderboard.config import settings
from leaderboard.game import BoardDefinition, game
from leaderboard.identity import Identity
from leaderboard.problems import Conflict, Forbidden, NotFound, ServiceUnavailable, UnprocessableContent
from leaderboard.seasons import Season

logger = Logger(child=True)

# The largest total a player can hold. Redis keeps scores as doubles, exact up to 2^53 (about 9.007e15).
MAX_TOTAL = 10**15
# An accepted score still unapplied after this long was never queued: its request died between the transaction and
# SendMessage (three times PostScoreFunction's timeout). A retry then queues it again instead of answering 409.
STRANDED_AFTER_MS = 30_000
# Concurrent writes to the same items are refused (a cancelled transaction, a failed `rev` condition); a retry with
# fresh reads usually goes through.
_CONFLICT_RETRIES = 3


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


def _acceptance(accepted: AcceptedScore) -> Any:
    """The action takes the score; the player's accepted total (applied or still queued) stays within MAX_TOTAL, and
    the action waits in their `pending` set until the consumer applies it."""
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
                "UpdateExpression": "ADD accepted_total :score, pending :action",
                "ConditionExpression": "attribute_not_exists(accepted_total) OR accepted_total <= :room",
                "ExpressionAttributeValues": {
                    ":score": {"N": str(accepted.score)},
                    ":action": {"SS": [accepted.action_id]},
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
    """The score this action accepted, if it is the same score by the same player, long enough ago that its request
    must have died, and still pending (never applied)."""
    if action is None or action["user_id"]["S"] != caller.user_id:
        return None
    if action.get("score", {}).get("N") != str(score):
        return None
    accepted_at_ms = int(action["accepted_at"]["N"])
    if now_ms - accepted_at_ms < STRANDED_AFTER_MS or not _is_pending(caller.user_id, action["action_id"]["S"]):
        return None
    return AcceptedScore(action["action_id"]["S"], caller.user_id, caller.display_name, score, accepted_at_ms)


def _is_pending(user_id: str, action_id: str) -> bool:
    item = _player_item(user_id)
    return item is not None and action_id in item.get("pending", {}).get("SS", [])


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
                        "ConditionExpression": "accepted_at = :accepted",
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
                        "UpdateExpression": "ADD accepted_total :minus DELETE pending :action",
                        "ConditionExpression": "contains(pending, :id)",
                        "ExpressionAttributeValues": {
                            ":minus": {"N": str(-accepted.score)},
                            ":action": {"SS": [accepted.action_id]},
                            ":id": {"S": accepted.action_id},
                        },
                    }
                },
            ],
        )
    except client.exceptions.TransactionCanceledException:
        return False
    return True


def _cancellation(response: Any) -> tuple[list[str | None], list[dict[str, Any] | None]]:
    """Why each item of a cancelled two-item transaction failed ("None" = it did not), with its old item."""
    reasons = list(response.get("CancellationReasons") or [{}, {}])
    return [reason.get("Code") for reason in reasons], [reason.get("Item") for reason in reasons]


# --- applying ------------------------------------------------------------------------------------------------------


def parse_message(body: str) -> AcceptedScore:
    """The accepted score a queue message carries; PoisonMessage if it carries none."""
    try:
        fields = json.loads(body)
        accepted = AcceptedScore(**fields)
    except (ValueError, TypeError) as exc:
        raise PoisonMessage("not an accepted score") from exc
    if not all(isinstance(value, str) and value for value in (accepted.action_id, accepted.user_id)):
        raise PoisonMessage("not an accepted score")
    if not isinstance(accepted.display_name, str):
        raise PoisonMessage("not an accepted score")
    if not all(type(value) is int for value in (accepted.score, accepted.accepted_at_ms)):
        raise PoisonMessage("not an accepted score")
    return accepted


# A season of a board: ("weekly", "2026-W49").
SeasonKey = tuple[str, str]


@dataclass
class Committed:
    """What applying a batch did: the messages whose scores can never be applied (poison), those of players whose
    write failed (DynamoDB throttled it, or others kept changing the player: delivered again later), and the players'
    points on every board and season the batch's scores feed, as the ledger now holds them, for the boards in Redis."""

    poison: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    points: dict[SeasonKey, list[PlayerTotal]] = field(default_factory=lambda: defaultdict(list))


def commit(batch: Mapping[str, AcceptedScore], now_ms: int) -> Committed:
    """Add each score to every board its action type feeds, in the season in which it was accepted, exactly once: one
    read for the batch, one conditional write per player. A repeat is a no-op; a score its action never accepted is
    poison. `batch` maps message ids to their scores."""
    committed = Committed()
    by_player: dict[str, list[tuple[str, AcceptedScore]]] = defaultdict(list)
    for message_id, accepted in batch.items():
        by_player[accepted.user_id].append((message_id, accepted))
    players, actions = _read_batch(by_player, {accepted.action_id for accepted in batch.values()})
    for user_id, messages in by_player.items():
        typed = [
            (message_id, accepted, _accepted_type(actions.get(accepted.action_id), accepted))
            for message_id, accepted in messages
        ]
        committed.poison += [message_id for message_id, _, action_type in typed if action_type is None]
        valid = [(message_id, accepted, action_type) for message_id, accepted, action_type in typed if action_type]
        if valid:
            _commit_player(committed, players.get(user_id), user_id, valid, now_ms)
    return committed


def _commit_player(
    committed: Committed,
    item: dict[str, Any] | None,
    user_id: str,
    valid: list[tuple[str, AcceptedScore, str]],
    now_ms: int,
) -> None:
    """Apply one player's scores of the batch, and note their points on the seasons those scores feed."""
    scores = [(accepted, action_type) for _, accepted, action_type in valid]
    try:
        ledger = _apply_to_player(item, user_id, scores, now_ms)
    except (BotoCoreError, ClientError):  # this player's scores alone wait for their next delivery
        logger.exception("could not apply a player's scores", extra={"user_id": user_id})
        committed.failed += [message_id for message_id, _, _ in valid]
        return
    for key in {key for accepted, action_type in scores for key in _fed(action_type, accepted, now_ms)}:
        if key in ledger.seasons:
            points, reached_at_ms = ledger.seasons[key]
            committed.points[key].append(PlayerTotal(user_id, ledger.display_name, points, reached_at_ms))


def _accepted_type(action: dict[str, Any] | None, accepted: AcceptedScore) -> str | None:
    """The action's type, if the action accepted exactly this score from this player (else the message is poison)."""
    if action is None or action["user_id"]["S"] != accepted.user_id:
        return None
    if action.get("score", {}).get("N") != str(accepted.score):
        return None
    if action.get("accepted_at", {}).get("N") != str(accepted.accepted_at_ms):
        return None
    return str(action["type"]["S"])


def _fed(action_type: str, accepted: AcceptedScore, now_ms: int) -> Iterator[SeasonKey]:
    """The seasons a score feeds: per board of its action type, the season it was accepted in, if still readable (a
    score redriven from the dead-letter queue after its season's readable days counts on the other boards only)."""
    for definition in game().boards_fed_by(action_type):
        season = definition.season_at(accepted.accepted_at_ms)
        if definition.is_readable(season, now_ms):
            yield definition.id, season.name


@dataclass
class PlayerLedger:
    """A player's item in PlayerTotalsTable, as far as applying scores goes."""

    display_name: str
    seasons: dict[SeasonKey, tuple[int, int]]
    pending: set[str]
    rev: int

    @classmethod
    def of(cls, item: dict[str, Any] | None) -> "PlayerLedger":
        item = item or {}
        seasons = {
            _season_key(key): (int(value["L"][0]["N"]), int(value["L"][1]["N"]))
            for key, value in item.get("seasons", {}).get("M", {}).items()
        }
        pending = set(item.get("pending", {}).get("SS", []))
        return cls(item.get("display_name", {}).get("S", ""), seasons, pending, int(item.get("rev", {}).get("N", 0)))

    def add(self, accepted: AcceptedScore, action_type: str, now_ms: int) -> None:
        """Count the score on every season it feeds (sum: points add up, the moment is the latest score's; best: the
        highest score, reached when it was first scored)."""
        for board_id, season in _fed(action_type, accepted, now_ms):
            definition = game().boards[board_id]
            points, reached = self.seasons.get((board_id, season), (0, 0))
            if definition.aggregate == "sum":
                self.seasons[board_id, season] = (points + accepted.score, max(reached, accepted.accepted_at_ms))
            elif accepted.score > points or (accepted.score == points and accepted.accepted_at_ms < reached):
                self.seasons[board_id, season] = (accepted.score, accepted.accepted_at_ms)

    def forget_unreadable(self, now_ms: int) -> None:
        """Drop the seasons no longer readable (their final top 100 is archived): the item stays small."""
        for board_id, season_name in list(self.seasons):
            if game().readable_season(board_id, season_name, now_ms) is None:
                del self.seasons[board_id, season_name]


def _season_key(key: str) -> SeasonKey:
    board_id, _, season = key.partition("/")
    return board_id, season


def _apply_to_player(
    item: dict[str, Any] | None, user_id: str, scores: list[tuple[AcceptedScore, str]], now_ms: int
) -> PlayerLedger:
    """Apply the player's pending scores among `scores` in one conditional write; the ledger as it then stands."""
    for attempt in range(_CONFLICT_RETRIES + 1):
        ledger = PlayerLedger.of(item)
        # Once per action, even when a batch holds the same score twice (a retry queued it again).
        pending = {
            accepted.action_id: (accepted, kind) for accepted, kind in scores if accepted.action_id in ledger.pending
        }
        due = sorted(pending.values(), key=lambda pair: pair[0].accepted_at_ms)
        if not due:
            return ledger  # all applied already: a redelivery
        ledger.forget_unreadable(now_ms)
        for accepted, action_type in due:
            ledger.add(accepted, action_type, now_ms)
        ledger.display_name = due[-1][0].display_name
        try:
            _write_ledger(user_id, ledger, [accepted.action_id for accepted, _ in due])
            return ledger
        except dynamodb().exceptions.ConditionalCheckFailedException:
            if attempt == _CONFLICT_RETRIES:
                raise
            item = _player_item(user_id)  # another consumer applied some of them meanwhile
    raise AssertionError("unreachable")


def _write_ledger(user_id: str, ledger: PlayerLedger, applied: list[str]) -> None:
    values: dict[str, Any] = {
        ":seasons": {
            "M": {
                f"{board_id}/{season}": {"L": [{"N": str(points)}, {"N": str(reached)}]}
                for (board_id, season), (points, reached) in ledger.seasons.items()
            }
        },
        ":name": {"S": ledger.display_name},
        ":rev": {"N": str(ledger.rev)},
        ":next": {"N": str(ledger.rev + 1)},
        ":applied": {"SS": applied},
    }
    conditions = ["(attribute_not_exists(rev) OR rev = :rev)"]
    for index, action_id in enumerate(applied):  # still pending: not applied, nor taken back, meanwhile
        values[f":a{index}"] = {"S": action_id}
        conditions.append(f"contains(pending, :a{index})")
    dynamodb().update_item(
        TableName=settings.player_totals_table,
        Key={"user_id": {"S": user_id}},
        UpdateExpression="SET seasons = :seasons, display_name = :name, rev = :next DELETE pending :applied",
        ConditionExpression=" AND ".join(conditions),
        ExpressionAttributeValues=values,
    )


def _read_batch(
    players: Iterable[str], action_ids: Iterable[str]
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """The players' items and the actions, strongly consistent, in one BatchGetItem (more if DynamoDB says so)."""
    players_table, actions_table = settings.player_totals_table, settings.actions_table
    keys = {
        players_table: [{"user_id": {"S": user_id}} for user_id in players],
        actions_table: [{"action_id": {"S": action_id}} for action_id in action_ids],
    }
    request: Any = {table: {"Keys": keys, "ConsistentRead": True} for table, keys in keys.items() if keys}
    found: dict[str, list[dict[str, Any]]] = defaultdict(list)
    while request:
        response = dynamodb().batch_get_item(RequestItems=request)
        for table, items in response["Responses"].items():
            found[table].extend(items)
        request = response.get("UnprocessedKeys") or None
    return (
        {item["user_id"]["S"]: item for item in found[players_table]},
        {item["action_id"]["S"]: item for item in found[actions_table]},
    )


def _player_item(user_id: str) -> dict[str, Any] | None:
    response = dynamodb().get_item(
        TableName=settings.player_totals_table, Key={"user_id": {"S": user_id}}, ConsistentRead=True
    )
    return response.get("Item")


def update_boards(points: dict[SeasonKey, list[PlayerTotal]], now_ms: int) -> None:
    """Bring the boards up to the ledger for these players; a change to a season on show is published live (one
    wake-up request for all the boards whose publishing lease a write took)."""
    leases: list[tuple[Board, str | None]] = []
    for (board_id, season_name), totals in points.items():
        found = game().season(board_id, season_name)
        if found is None:
            continue  # a board since removed from the game's definitions
        definition, season = found
        board = open_board(definition, season)
        leases.append((board, board.set_totals(totals, live=_on_show(definition, season, now_ms)).lease))
    live.wake_publishers(leases)


def _on_show(definition: BoardDefinition, season: Season, now_ms: int) -> bool:
    return definition.season_at(now_ms) == season


# --- rebuilding ----------------------------------------------------------------------------------------------------


def _every(key: SeasonKey) -> bool:
    return True


def all_points(wanted: Callable[[SeasonKey], bool] = _every) -> Iterator[tuple[SeasonKey, PlayerTotal]]:
    """Every player's points on every season the ledger holds that is `wanted`, read from DynamoDB page by page."""
    paginator = dynamodb().get_paginator("scan")
    pages = paginator.paginate(
        TableName=settings.player_totals_table, ConsistentRead=True, FilterExpression="attribute_exists(seasons)"
    )
    for page in pages:
        for item in page["Items"]:
            ledger = PlayerLedger.of(item)
            for key, (points, reached_at_ms) in ledger.seasons.items():
                if wanted(key):
                    yield key, PlayerTotal(item["user_id"]["S"], ledger.display_name, points, reached_at_ms)


def rebuild(now_ms: int, wanted: Callable[[SeasonKey], bool] = _every, chunk: int = 500) -> dict[SeasonKey, int]:
    """Write the ledger's points to the boards in Redis (every readable season that is `wanted`); they keep only what
    moves a player up, so racing the consumer is safe. The players written per season."""
    written: dict[SeasonKey, int] = defaultdict(int)
    pending: dict[SeasonKey, list[PlayerTotal]] = defaultdict(list)
    for key, player in all_points(wanted):
        if game().readable_season(*key, now_ms) is None:
            continue
        pending[key].append(player)
        if len(pending[key]) == chunk:
            update_boards({key: pending.pop(key)}, now_ms)
            written[key] += chunk
    update_boards(pending, now_ms)
    for key, players in pending.items():
        written[key] += len(players)
    return dict(written)
