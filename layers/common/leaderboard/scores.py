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
import math
import re
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from aws_lambda_powertools import Logger
from botocore.exceptions import BotoCoreError, ClientError

from leaderboard import actions, live
from leaderboard.actions import Action, open_actions_attribute
from leaderboard.aws import dynamodb, sqs
from leaderboard.board import Board, PlayerTotal, open_board
from leaderboard.config import settings
from leaderboard.game import ActionType, BoardDefinition, game
from leaderboard.identity import Identity
from leaderboard.problems import (
    Conflict,
    Forbidden,
    NotFound,
    Problem,
    ServiceUnavailable,
    TooManyRequests,
    UnprocessableContent,
)
from leaderboard.seasons import Season
from leaderboard.security_events import SecurityEvent

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
    """Durably record `score` for the caller's open action, within the game's fair-play limits, then queue it."""
    if user_id != caller.user_id:
        raise Forbidden("Scores can only be posted for yourself.")
    now_ms = actions.now_ms()
    action = Action.parse(action_id)
    if action is None:
        raise NotFound("You have no such action.")
    accepted = AcceptedScore(action_id, user_id, caller.display_name, score, now_ms)
    refusal = _refusal(action, score, now_ms)
    if refusal:
        return _first_refusal(accepted, action, refusal)
    return _record(
        accepted,
        action,
        [_ledger_entry(accepted, action), _player_acceptance(accepted, action)],
        repeat_accepted=False,
    )


def accept_from_server(user_id: str, action_type: str, server_action_id: str, score: int) -> AcceptedScore:
    """Record a score that the studio's own game server posts for a player: exactly once per player and server action
    id (the same score posted again is answered as accepted, and counted once), skipping the limits on what players
    post themselves."""
    kind = game().action_types.get(action_type)
    if kind is None:
        raise UnprocessableContent(f"Unknown action type; the types are: {', '.join(sorted(game().action_types))}.")
    if not 1 <= score <= kind.max_score:
        raise UnprocessableContent(f"The score must be a whole number from 1 to {kind.max_score}.")
    now_ms = actions.now_ms()
    action = Action.of_server(user_id, server_action_id, kind, now_ms)
    accepted = AcceptedScore(action.action_id, user_id, "", score, now_ms)  # the player's item holds their name
    transaction = [
        _ledger_entry(accepted, action),
        {"Update": _player_update(accepted, conditions=["attribute_exists(display_name)"])},  # a registered player
    ]
    return _record(accepted, action, transaction, repeat_accepted=True)


def _refusal(action: Action, score: int, now_ms: int) -> Problem | None:
    """What is wrong with scoring this action now, as far as the action itself says."""
    if action.expires_at_ms <= now_ms:
        return Conflict("This action has expired.")
    if not 1 <= score <= action.kind.max_score:
        return UnprocessableContent(f"The score must be a whole number from 1 to {action.kind.max_score}.")
    if now_ms < action.scorable_at_ms:
        return UnprocessableContent(
            f"This {action.type} can be scored from {action.body()['scorable_at']}: "
            f"it lasts at least {action.kind.min_duration_seconds} s.",
            security_event=SecurityEvent.FARMING_REFUSED,
        )
    return None


def _first_refusal(accepted: AcceptedScore, action: Action, refusal: Problem) -> AcceptedScore:
    """The contract's answer when the action itself refuses the score: whose action it is, and whether it was scored,
    come first (404, 409; or, for the same score whose request died before it was queued, the score)."""
    item = player_item(accepted.user_id) or {}
    if "banned_at" in item:
        raise Forbidden("This player is banned.", security_event=SecurityEvent.BANNED_PLAYER_REFUSED)
    if accepted.action_id in item.get(open_actions_attribute(action.type), {}).get("SS", []):
        raise refusal
    scored = _action(accepted.action_id)
    if scored is None:
        raise NotFound("You have no such action.")
    return _accepted_before(scored, accepted, repeat_accepted=False)


def _record(accepted: AcceptedScore, action: Action, transaction: list[Any], repeat_accepted: bool) -> AcceptedScore:
    """Run the acceptance (the ledger entry, then the player's item) and queue the score. A cancelled one is answered
    with the contract's problem; with the score itself when the same score was accepted before and either waits to be
    queued (its request died) or `repeat_accepted`."""
    client = dynamodb()
    # One token for every attempt: if DynamoDB applied it but the answer was lost, botocore's retry is a no-op.
    token = uuid.uuid4().hex
    for attempt in range(_CONFLICT_RETRIES):
        try:
            client.transact_write_items(TransactItems=transaction, ClientRequestToken=token)
            break
        except client.exceptions.TransactionCanceledException as exc:
            codes, items = _cancellation(exc.response)
            if codes[0] == "ConditionalCheckFailed":
                return _accepted_before(items[0] or {}, accepted, repeat_accepted)
            if codes[1] == "ConditionalCheckFailed":
                raise _player_refusal(items[1] or {}, accepted, action) from None
            if attempt + 1 == _CONFLICT_RETRIES:  # the same items kept being written by others
                raise ServiceUnavailable("The score could not be recorded yet; try again.", retry_after=1) from None
    _enqueue(accepted, action)
    return accepted


def _ledger_entry(accepted: AcceptedScore, action: Action) -> dict[str, Any]:
    """The scored action, in ActionsTable for good: what the consumer checks a message against."""
    item: dict[str, Any] = {
        "action_id": {"S": accepted.action_id},
        "user_id": {"S": accepted.user_id},
        "type": {"S": action.type},
        "score": {"N": str(accepted.score)},
        "started_at": {"N": str(action.started_at_ms)},
        "accepted_at": {"N": str(accepted.accepted_at_ms)},
    }
    if action.by_server:
        item["by_server"] = {"BOOL": True}
    return {
        "Put": {
            "TableName": settings.actions_table,
            "Item": item,
            "ConditionExpression": "attribute_not_exists(action_id)",
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }
    }


def _player_acceptance(accepted: AcceptedScore, action: Action) -> dict[str, Any]:
    """The player's item, for their own score: the action leaves their open actions, and this hour's scores and
    points of its type stay within the game's limits."""
    names = {"#open": open_actions_attribute(action.type)}
    values: dict[str, Any] = {":id": {"S": accepted.action_id}}
    counts, conditions = [], ["contains(#open, :id)"]
    for index, limit in enumerate(hourly_limits(action.kind, accepted.score, accepted.accepted_at_ms)):
        names[f"#h{index}"] = limit.attribute
        values |= {f":h{index}": {"N": str(limit.amount)}, f":h{index}_room": {"N": str(limit.cap - limit.amount)}}
        counts.append(f"#h{index} = if_not_exists(#h{index}, :zero) + :h{index}")
        conditions.append(f"(attribute_not_exists(#h{index}) OR #h{index} <= :h{index}_room)")
    if counts:
        values[":zero"] = {"N": "0"}
    update = _player_update(accepted, "DELETE #open :action" + (f" SET {', '.join(counts)}" if counts else ""))
    update["ConditionExpression"] = " AND ".join([*conditions, update["ConditionExpression"]])
    update["ExpressionAttributeNames"] = names
    update["ExpressionAttributeValues"] |= values
    return {"Update": update}


def _player_update(accepted: AcceptedScore, also: str = "", conditions: Iterable[str] = ()) -> dict[str, Any]:
    """The player's accepted total (applied or still queued) stays within MAX_TOTAL; the score waits in `pending`
    until the consumer applies it; a banned player's scores are refused."""
    return {
        "TableName": settings.player_totals_table,
        "Key": {"user_id": {"S": accepted.user_id}},
        "UpdateExpression": f"ADD accepted_total :score, pending :action {also}".rstrip(),
        "ConditionExpression": " AND ".join(
            [
                *conditions,
                "attribute_not_exists(banned_at)",
                "(attribute_not_exists(accepted_total) OR accepted_total <= :room)",
            ]
        ),
        "ExpressionAttributeValues": {
            ":score": {"N": str(accepted.score)},
            ":action": {"SS": [accepted.action_id]},
            ":room": {"N": str(MAX_TOTAL - accepted.score)},
        },
        "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
    }


@dataclass(frozen=True)
class HourlyLimit:
    """One of a player's counters of the clock hour (an attribute of their item; the consumer removes past ones)."""

    attribute: str
    cap: int
    amount: int  # what one score adds to it
    counts: str  # "scores" or "points"


_HOUR_MS = 3_600_000
_HOURLY_COUNTER = re.compile(r"^[np]:[a-z0-9-]+:(?P<hour>[0-9]+)$")


def hourly_limits(kind: ActionType, score: int, moment_ms: int) -> list[HourlyLimit]:
    """The hourly limits a player's score of this type counts against at `moment_ms`."""
    hour = moment_ms // _HOUR_MS
    limits = []
    if kind.max_scores_per_hour is not None:
        limits.append(HourlyLimit(f"n:{kind.name}:{hour}", kind.max_scores_per_hour, 1, "scores"))
    if kind.max_points_per_hour is not None:
        limits.append(HourlyLimit(f"p:{kind.name}:{hour}", kind.max_points_per_hour, score, "points"))
    return limits


def _past_counters(item: dict[str, Any], now_ms: int) -> list[str]:
    """The player's hourly counters of hours before the last one (clocks of two Lambdas may differ a little)."""
    current = now_ms // _HOUR_MS
    return [name for name in item if (found := _HOURLY_COUNTER.match(name)) and int(found["hour"]) < current - 1]


def _player_refusal(item: dict[str, Any], accepted: AcceptedScore, action: Action) -> Problem:
    """Why the player's item refused the score (first applicable wins)."""
    if "banned_at" in item:
        return Forbidden("This player is banned.", security_event=SecurityEvent.BANNED_PLAYER_REFUSED)
    if action.by_server:  # the players' own limits are not the servers'
        if "display_name" not in item:
            return NotFound("There is no such player.")
        return UnprocessableContent(f"This score would take the player's total past {MAX_TOTAL}.")
    if accepted.action_id not in item.get(open_actions_attribute(action.type), {}).get("SS", []):
        return NotFound("You have no such action.")
    for limit in hourly_limits(action.kind, accepted.score, accepted.accepted_at_ms):
        if int(item.get(limit.attribute, {}).get("N", 0)) > limit.cap - limit.amount:
            return TooManyRequests(
                f"This score would pass this hour's limit of {limit.cap} {limit.counts} for {action.type}.",
                retry_after=max(1, math.ceil((_HOUR_MS - accepted.accepted_at_ms % _HOUR_MS) / 1000)),
                security_event=SecurityEvent.FARMING_REFUSED,
            )
    return UnprocessableContent(f"This score would take your total past {MAX_TOTAL}.")


def _accepted_before(record: dict[str, Any], accepted: AcceptedScore, repeat_accepted: bool) -> AcceptedScore:
    """The answer for an action already in the ledger: the same player's same score, if it waits to be queued (its
    request died between the acceptance and SendMessage: queued now) or `repeat_accepted`; else 404 or 409."""
    if record.get("user_id", {}).get("S") != accepted.user_id:
        raise NotFound("You have no such action.")
    if record["score"]["N"] == str(accepted.score):
        before = AcceptedScore(
            accepted.action_id, accepted.user_id, accepted.display_name, accepted.score, int(record["accepted_at"]["N"])
        )
        if accepted.accepted_at_ms - before.accepted_at_ms >= STRANDED_AFTER_MS and _is_pending(before):
            _send(before)  # the consumer applies it once, even if the first send did happen
            return before
        if repeat_accepted:
            return before
    raise Conflict("This action already has a score.")


def _is_pending(accepted: AcceptedScore) -> bool:
    item = player_item(accepted.user_id)
    return item is not None and accepted.action_id in item.get("pending", {}).get("SS", [])


def _action(action_id: str) -> dict[str, Any] | None:
    response = dynamodb().get_item(
        TableName=settings.actions_table, Key={"action_id": {"S": action_id}}, ConsistentRead=True
    )
    return response.get("Item")


def _send(accepted: AcceptedScore) -> None:
    sqs().send_message(QueueUrl=settings.scores_queue_url, MessageBody=json.dumps(asdict(accepted)))


def _enqueue(accepted: AcceptedScore, action: Action) -> None:
    """Send the accepted score to the consumer; if SQS fails, take the acceptance back so the client can retry."""
    try:
        _send(accepted)
    except Exception as exc:
        if _take_back(accepted, action):
            raise ServiceUnavailable("The score could not be queued; nothing was recorded. Try again.") from exc
        # The send did go through and the consumer already applied it: the score is accepted after all.


def _take_back(accepted: AcceptedScore, action: Action) -> bool:
    """Undo an acceptance that was never queued (the action open again, the hour's counts as they were); False if
    the consumer applied it meanwhile (it was queued)."""
    names: dict[str, str] = {}
    values: dict[str, Any] = {
        ":minus": {"N": str(-accepted.score)},
        ":action": {"SS": [accepted.action_id]},
        ":id": {"S": accepted.action_id},
    }
    update = "ADD accepted_total :minus"
    if not action.by_server:
        names["#open"] = open_actions_attribute(action.type)
        update += ", #open :action"
        limits = hourly_limits(action.kind, accepted.score, accepted.accepted_at_ms)
        for index, limit in enumerate(limits):
            names[f"#h{index}"] = limit.attribute
            values[f":h{index}"] = {"N": str(limit.amount)}
        if limits:
            values[":zero"] = {"N": "0"}
            update += " SET " + ", ".join(
                f"#h{index} = if_not_exists(#h{index}, :zero) - :h{index}" for index in range(len(limits))
            )
    player: Any = {
        "TableName": settings.player_totals_table,
        "Key": {"user_id": {"S": accepted.user_id}},
        "UpdateExpression": f"{update} DELETE pending :action",
        "ConditionExpression": "contains(pending, :id)",
        "ExpressionAttributeValues": values,
    }
    if names:
        player["ExpressionAttributeNames"] = names
    client = dynamodb()
    try:
        client.transact_write_items(
            ClientRequestToken=uuid.uuid4().hex,
            TransactItems=[
                {
                    "Delete": {
                        "TableName": settings.actions_table,
                        "Key": {"action_id": {"S": accepted.action_id}},
                        "ConditionExpression": "accepted_at = :accepted",
                        "ExpressionAttributeValues": {":accepted": {"N": str(accepted.accepted_at_ms)}},
                    }
                },
                {"Update": player},
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


@dataclass(frozen=True)
class Origin:
    """What scored: an action of this type, posted by the player or by the studio's server."""

    action_type: str
    by_server: bool


def commit(batch: Mapping[str, AcceptedScore], now_ms: int) -> Committed:
    """Add each score to every board its action type feeds, in the season in which it was accepted, exactly once: one
    read for the batch, one conditional write per player. A repeat is a no-op; a score its action never accepted is
    poison. `batch` maps message ids to their scores."""
    committed = Committed()
    by_player: dict[str, list[tuple[str, AcceptedScore]]] = defaultdict(list)
    for message_id, accepted in batch.items():
        by_player[accepted.user_id].append((message_id, accepted))
    players, ledger_entries = _read_batch(by_player, {accepted.action_id for accepted in batch.values()})
    for user_id, messages in by_player.items():
        traced = [
            (message_id, accepted, _origin(ledger_entries.get(accepted.action_id), accepted))
            for message_id, accepted in messages
        ]
        committed.poison += [message_id for message_id, _, origin in traced if origin is None]
        valid = [(message_id, accepted, origin) for message_id, accepted, origin in traced if origin]
        if valid:
            _commit_player(committed, players.get(user_id), user_id, valid, now_ms)
    return committed


def _commit_player(
    committed: Committed,
    item: dict[str, Any] | None,
    user_id: str,
    valid: list[tuple[str, AcceptedScore, Origin]],
    now_ms: int,
) -> None:
    """Apply one player's scores of the batch, and note their points on the seasons those scores feed (none for a
    banned player: their standings are hidden)."""
    scores = [(accepted, origin) for _, accepted, origin in valid]
    try:
        ledger = _apply_to_player(item, user_id, scores, now_ms)
    except (BotoCoreError, ClientError):  # this player's scores alone wait for their next delivery
        logger.exception("could not apply a player's scores", extra={"user_id": user_id})
        committed.failed += [message_id for message_id, _, _ in valid]
        return
    if ledger.banned_at_ms is not None:
        return
    for key in {key for accepted, origin in scores for key in _fed(origin, accepted, now_ms)}:
        if key in ledger.seasons:
            points, reached_at_ms = ledger.seasons[key]
            committed.points[key].append(PlayerTotal(user_id, ledger.display_name, points, reached_at_ms))


def _origin(action: dict[str, Any] | None, accepted: AcceptedScore) -> Origin | None:
    """Where the score comes from, if its action accepted exactly this score from this player (else the message is
    poison)."""
    if action is None or action["user_id"]["S"] != accepted.user_id:
        return None
    if action.get("score", {}).get("N") != str(accepted.score):
        return None
    if action.get("accepted_at", {}).get("N") != str(accepted.accepted_at_ms):
        return None
    return Origin(str(action["type"]["S"]), action.get("by_server", {}).get("BOOL", False))


def _fed(origin: Origin, accepted: AcceptedScore, now_ms: int) -> Iterator[SeasonKey]:
    """The seasons a score feeds: per board of its action type, the season it was accepted in, if still readable (a
    score redriven from the dead-letter queue after its season's readable days counts on the other boards only)."""
    for definition in game().boards_fed_by(origin.action_type, origin.by_server):
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
    banned_at_ms: int | None = None  # when a moderator banned the player (hidden from every board until unbanned)
    # Per season, when a moderator removed the player's points there: scores accepted until then no longer count.
    fences: dict[SeasonKey, int] = field(default_factory=dict)
    past_counters: list[str] = field(default_factory=list)  # hourly counters to drop (their hour is over)

    @classmethod
    def of(cls, item: dict[str, Any] | None, now_ms: int = 0) -> "PlayerLedger":
        item = item or {}
        seasons = {
            _season_key(key): (int(value["L"][0]["N"]), int(value["L"][1]["N"]))
            for key, value in item.get("seasons", {}).get("M", {}).items()
        }
        return cls(
            display_name=item.get("display_name", {}).get("S", ""),
            seasons=seasons,
            pending=set(item.get("pending", {}).get("SS", [])),
            rev=int(item.get("rev", {}).get("N", 0)),
            banned_at_ms=int(item["banned_at"]["N"]) if "banned_at" in item else None,
            fences={_season_key(key): int(value["N"]) for key, value in item.get("fences", {}).get("M", {}).items()},
            past_counters=_past_counters(item, now_ms) if now_ms else [],
        )

    def add(self, accepted: AcceptedScore, origin: Origin, now_ms: int) -> None:
        """Count the score on every season it feeds (sum: points add up, the moment is the latest score's; best: the
        highest score, reached when it was first scored)."""
        for board_id, season in _fed(origin, accepted, now_ms):
            if accepted.accepted_at_ms <= self.fences.get((board_id, season), -1):
                continue  # accepted before a moderator removed the player's points there
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
        for key in list(self.fences):
            if game().readable_season(*key, now_ms) is None:
                del self.fences[key]


def _season_key(key: str) -> SeasonKey:
    board_id, _, season = key.partition("/")
    return board_id, season


def _apply_to_player(
    item: dict[str, Any] | None, user_id: str, scores: list[tuple[AcceptedScore, Origin]], now_ms: int
) -> PlayerLedger:
    """Apply the player's pending scores among `scores` in one conditional write; the ledger as it then stands."""
    for attempt in range(_CONFLICT_RETRIES + 1):
        ledger = PlayerLedger.of(item, now_ms)
        # Once per action, even when a batch holds the same score twice (a retry queued it again).
        pending = {
            accepted.action_id: (accepted, kind) for accepted, kind in scores if accepted.action_id in ledger.pending
        }
        due = sorted(pending.values(), key=lambda pair: pair[0].accepted_at_ms)
        if not due:
            return ledger  # all applied already: a redelivery
        ledger.forget_unreadable(now_ms)
        for accepted, origin in due:
            ledger.add(accepted, origin, now_ms)
        # A player's own score carries the name in their token; a server's, none (the item's stays).
        ledger.display_name = due[-1][0].display_name or ledger.display_name
        try:
            _write_ledger(user_id, ledger, [accepted.action_id for accepted, _ in due])
            return ledger
        except dynamodb().exceptions.ConditionalCheckFailedException:
            if attempt == _CONFLICT_RETRIES:
                raise
            item = player_item(user_id)  # another consumer applied some of them meanwhile
    raise AssertionError("unreachable")


def _write_ledger(user_id: str, ledger: PlayerLedger, applied: list[str]) -> None:
    update = ledger_update(user_id, ledger)
    values = update["ExpressionAttributeValues"]
    values[":applied"] = {"SS": applied}
    for index, action_id in enumerate(applied):  # still pending: not applied, nor taken back, meanwhile
        values[f":a{index}"] = {"S": action_id}
        update["ConditionExpression"] += f" AND contains(pending, :a{index})"
    update["UpdateExpression"] += " DELETE pending :applied"
    dynamodb().update_item(**update)


def ledger_update(user_id: str, ledger: PlayerLedger) -> Any:
    """The write of a player's ledger as it now stands (seasons, fences, name), on condition that nobody changed the
    item since it was read (`rev`, which it raises); its hourly counters of past hours go."""
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
    }
    sets = ["seasons = :seasons", "display_name = :name", "rev = :next"]
    removes = [f"#past{index}" for index in range(len(ledger.past_counters))]
    if ledger.banned_at_ms is not None:
        values[":banned_at"] = {"N": str(ledger.banned_at_ms)}
        sets.append("banned_at = :banned_at")
    else:
        removes.append("banned_at")
    if ledger.fences:
        values[":fences"] = {
            "M": {f"{board}/{season}": {"N": str(at)} for (board, season), at in ledger.fences.items()}
        }
        sets.append("fences = :fences")
    else:
        removes.append("fences")
    update: Any = {
        "TableName": settings.player_totals_table,
        "Key": {"user_id": {"S": user_id}},
        "UpdateExpression": f"SET {', '.join(sets)}" + (f" REMOVE {', '.join(removes)}" if removes else ""),
        "ConditionExpression": "(attribute_not_exists(rev) OR rev = :rev)",
        "ExpressionAttributeValues": values,
    }
    if ledger.past_counters:
        update["ExpressionAttributeNames"] = {f"#past{i}": name for i, name in enumerate(ledger.past_counters)}
    return update


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


def player_item(user_id: str) -> dict[str, Any] | None:
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
            if ledger.banned_at_ms is not None:
                continue  # hidden from every board while banned
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
