"""Scores: accepted by the API into the player's ledger, exactly once; the boards follow (board_sync.py).

The ledger is one item per player (PlayerTotalsTable): their open actions (actions.py), their points on every board
and season still readable (`seasons`, e.g. `weekly/2026-W49` -> [points, the moment they were reached]), this hour's
counters for the fair-play limits, and `rev`, raised by every change of their points. However many boards a score
feeds, it writes that one item: DynamoDB bills a write per item, so adding boards adds no writes while the item stays
under 1 KB.

Accepting (POST /v1/scores) reads the player's item, checks the score against it (the action is theirs and open,
unexpired, in range, within this hour's limits), and writes it in one conditional write: the action leaves the open
set and the score is added to every board it feeds, in the season in which it is accepted, on condition that nobody
changed the item since it was read (`rev`). That write is the exactly-once: an action leaves the set once.

Before that write, a message goes to SQS: "this player's item reaches `rev` on these seasons". The consumer waits for
the item to get there and writes the player's points, as the ledger holds them, to the boards in Redis. Sending
first means no crash can leave a score in the ledger that the boards never hear of; a message whose write never
happened (its request died, or a conflict sent it again) is dropped once it is older than any write could be.

With an `Idempotency-Key` (and for a game server's score, whose id is its own) a receipt is written in the same
transaction, so that a repeat of the request is answered as the first one was.
"""

import hashlib
import json
import math
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from leaderboard import actions
from leaderboard.actions import Action, open_actions_attribute
from leaderboard.aws import batch_get, dynamodb, sqs
from leaderboard.config import settings
from leaderboard.game import ActionType, game
from leaderboard.identity import Identity
from leaderboard.problems import (
    Conflict,
    Forbidden,
    InvalidRequest,
    NotFound,
    Problem,
    ServiceUnavailable,
    TooManyRequests,
    UnprocessableContent,
)
from leaderboard.security_events import SecurityEvent

# The largest total a player can hold. Redis keeps scores as doubles, exact up to 2^53 (about 9.007e15).
MAX_TOTAL = 10**15
# A message older than this whose write is not in the ledger never will be: its request ended long ago (three times
# PostScoreFunction's timeout).
UNWRITTEN_AFTER_MS = 30_000
# How long an Idempotency-Key's first answer is kept (the contract: at least 24 hours).
IDEMPOTENCY_SECONDS = 24 * 3600
MAX_IDEMPOTENCY_KEY = 255
# Others change the same item at once (a score from another device, a moderator); a retry on a fresh read goes through.
_CONFLICT_RETRIES = 3

# A season of a board: ("weekly", "2026-W49").
SeasonKey = tuple[str, str]


@dataclass(frozen=True)
class AcceptedScore:
    """A score the API accepted: its answer."""

    action_id: str
    user_id: str
    score: int
    accepted_at_ms: int

    def body(self) -> dict[str, Any]:
        return {"action_id": self.action_id, "user_id": self.user_id, "score": self.score, "status": "accepted"}


class PoisonMessage(Exception):
    """A message that can never be applied; it goes to the dead-letter queue after its last receive."""


@dataclass(frozen=True)
class PlayerChanged:
    """What travels through the queue: the player's item reaches `rev`, and these seasons of theirs changed."""

    user_id: str
    rev: int
    seasons: tuple[SeasonKey, ...]
    sent_at_ms: int

    def message(self) -> str:
        seasons = [f"{board_id}/{season}" for board_id, season in self.seasons]
        return json.dumps({"user_id": self.user_id, "rev": self.rev, "seasons": seasons, "sent_at_ms": self.sent_at_ms})

    @classmethod
    def parse(cls, body: str) -> "PlayerChanged":
        """The change a queue message carries; PoisonMessage if it carries none."""
        try:
            fields = json.loads(body)
            if not isinstance(fields["seasons"], list):
                raise TypeError("seasons is not a list")
            seasons = tuple(map(_season_key, fields["seasons"]))
            change = cls(fields["user_id"], fields["rev"], seasons, fields["sent_at_ms"])
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise PoisonMessage("not a player's change") from exc
        if not (isinstance(change.user_id, str) and change.user_id):
            raise PoisonMessage("not a player's change")
        if not all(type(value) is int for value in (change.rev, change.sent_at_ms)):
            raise PoisonMessage("not a player's change")
        return change


def _season_key(key: str) -> SeasonKey:
    board_id, _, season = key.partition("/")
    return board_id, season


# --- accepting -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Receipt:
    """A record written with the score, in one transaction, so that a repeat of the request is answered as the first
    one was: a game server's action (kept for good), or a player's Idempotency-Key (kept 24 hours)."""

    table: str
    key_attribute: str
    item: dict[str, Any]
    answer: Callable[[dict[str, Any]], AcceptedScore]  # the answer to a repeat, from the receipt found (or a Problem)
    expires: bool = False  # an `expiration` (DynamoDB's TTL) past which the receipt no longer counts

    @property
    def key(self) -> dict[str, Any]:
        return {self.key_attribute: self.item[self.key_attribute]}

    def put(self, now_ms: int) -> dict[str, Any]:
        """The receipt's Put, on condition that there is none yet (or only an expired one TTL has not deleted)."""
        put: dict[str, Any] = {
            "TableName": self.table,
            "Item": self.item,
            "ConditionExpression": f"attribute_not_exists({self.key_attribute})",
        }
        if self.expires:
            put["ConditionExpression"] += " OR expiration < :now"
            put["ExpressionAttributeValues"] = {":now": {"N": str(now_ms // 1000)}}
        return put

    def is_live(self, found: dict[str, Any], now_ms: int) -> bool:
        return not self.expires or int(found["expiration"]["N"]) > now_ms // 1000


# Decides a score on the player's item as read: raises the contract's problem, or returns the change it makes (what the
# queue is told) and the write that makes it.
type Decision = Callable[[dict[str, Any] | None], tuple[PlayerChanged, dict[str, Any]]]


def accept(
    caller: Identity, user_id: str, action_id: str, score: int, idempotency_key: str | None = None
) -> AcceptedScore:
    """Record `score` for the caller's open action, within the game's fair-play limits, exactly once."""
    receipt = None
    if idempotency_key is not None:  # a malformed key is a malformed request: 400 before 403
        receipt = _idempotency_receipt(caller.user_id, idempotency_key, action_id, score)
    if user_id != caller.user_id:
        raise Forbidden("Scores can only be posted for yourself.")
    action = Action.parse(action_id)
    if action is None and receipt is None:  # with a key, its first answer (or its 422) comes first
        raise NotFound("You have no such action.")
    accepted = AcceptedScore(action_id, user_id, score, actions.now_ms())

    def decide(item: dict[str, Any] | None) -> tuple[PlayerChanged, dict[str, Any]]:
        if action is None:
            raise NotFound("You have no such action.")
        return _players_own(item, accepted, action, caller.display_name)

    return _accept(accepted, decide, receipt)


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
    accepted = AcceptedScore(action.action_id, user_id, score, now_ms)

    def decide(item: dict[str, Any] | None) -> tuple[PlayerChanged, dict[str, Any]]:
        if item is None or "display_name" not in item:
            raise NotFound("There is no such player.")
        if "banned_at" in item:
            raise Forbidden("This player is banned.", security_event=SecurityEvent.BANNED_PLAYER_REFUSED)
        return _record(item, accepted, action, display_name=None)

    return _accept(accepted, decide, _server_receipt(accepted, action))


def _accept(accepted: AcceptedScore, decide: Decision, receipt: Receipt | None) -> AcceptedScore:
    """Read the player's item (and the receipt, if any), decide, announce the change on the queue, write it; again on
    a fresh read if somebody changed the item meanwhile."""
    wrote = False
    for _ in range(_CONFLICT_RETRIES):
        item, found = _read(accepted.user_id, receipt)
        if receipt is not None and found is not None:
            return receipt.answer(found)
        if wrote and _last_score(item) == _last_score_of(accepted):
            return accepted  # an earlier attempt's write went through; only its answer was lost
        change, update = decide(item)
        _announce(change)
        wrote = True
        if _write(update, receipt):
            return accepted
    if _last_score(_read(accepted.user_id, None)[0]) == _last_score_of(accepted):
        return accepted  # the last attempt's write went through; only its answer was lost
    raise ServiceUnavailable("The score could not be recorded yet; try again.", retry_after=1)  # others kept at it


def _players_own(
    item: dict[str, Any] | None, accepted: AcceptedScore, action: Action, display_name: str
) -> tuple[PlayerChanged, dict[str, Any]]:
    """A player's own score: the contract's refusals, in its order, then the write that moves the action out of their
    open set and counts it on this hour's limits."""
    item = item or {}
    if "banned_at" in item:
        raise Forbidden("This player is banned.", security_event=SecurityEvent.BANNED_PLAYER_REFUSED)
    refusal = _refusal(action, accepted.score, accepted.accepted_at_ms)
    if accepted.action_id not in item.get(open_actions_attribute(action.type), {}).get("SS", []):
        if not action.belongs_to(accepted.user_id):
            raise NotFound("You have no such action.")
        if isinstance(refusal, Conflict):  # expired, whether or not the set still held it
            raise refusal
        raise Conflict("This action already has a score.")
    if refusal:
        raise refusal
    names = {"#open": open_actions_attribute(action.type)}
    values: dict[str, Any] = {":action": {"SS": [accepted.action_id]}, ":id": {"S": accepted.action_id}}
    counters = []
    for index, limit in enumerate(hourly_limits(action.kind, accepted.score, accepted.accepted_at_ms)):
        count = int(item.get(limit.attribute, {}).get("N", 0)) + limit.amount
        if count > limit.cap:
            raise TooManyRequests(
                f"This score would pass this hour's limit of {limit.cap} {limit.counts} for {action.type}.",
                retry_after=max(1, math.ceil((_HOUR_MS - accepted.accepted_at_ms % _HOUR_MS) / 1000)),
                security_event=SecurityEvent.FARMING_REFUSED,
            )
        names[f"#h{index}"] = limit.attribute
        values[f":h{index}"] = {"N": str(count)}
        counters.append(f"#h{index} = :h{index}")
    change, update = _record(item, accepted, action, display_name or None)
    update["UpdateExpression"] = _with_sets(update["UpdateExpression"], counters) + " DELETE #open :action"
    update["ConditionExpression"] += " AND contains(#open, :id)"
    update["ExpressionAttributeNames"] = update.get("ExpressionAttributeNames", {}) | names
    update["ExpressionAttributeValues"] |= values
    return change, update


def _refusal(action: Action, score: int, now_ms: int) -> Problem | None:
    """What is wrong with scoring this open action now, as far as the action itself says."""
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


def _record(
    item: dict[str, Any], accepted: AcceptedScore, action: Action, display_name: str | None
) -> tuple[PlayerChanged, dict[str, Any]]:
    """The change the score makes to the player's ledger (within MAX_TOTAL), and its write: on condition that the item
    is as read; it names the score it writes (so a retry whose answer was lost can tell)."""
    total = int(item.get("accepted_total", {}).get("N", 0)) + accepted.score
    if total > MAX_TOTAL:
        whose = "the player's" if action.by_server else "your"
        raise UnprocessableContent(f"This score would take {whose} total past {MAX_TOTAL}.")
    ledger = PlayerLedger.of(item, accepted.accepted_at_ms)
    ledger.forget_unreadable(accepted.accepted_at_ms)
    seasons = tuple(ledger.add(accepted, action))
    if display_name:  # a player's own score carries the name in their token; a server's, none (the item's stays)
        ledger.display_name = display_name
    update = ledger_update(accepted.user_id, ledger)
    update["UpdateExpression"] = _with_sets(
        update["UpdateExpression"], ["accepted_total = :total", "last_score = :last"]
    )
    update["ExpressionAttributeValues"] |= {
        ":total": {"N": str(total)},
        ":last": {"S": _last_score_of(accepted)},
    }
    return PlayerChanged(accepted.user_id, ledger.rev + 1, seasons, accepted.accepted_at_ms), update


def _with_sets(expression: str, sets: list[str]) -> str:
    """`expression` (which starts with a SET clause) with more assignments in it."""
    if not sets:
        return expression
    head, _, rest = expression.partition(" REMOVE ")
    return f"{head}, {', '.join(sets)}" + (f" REMOVE {rest}" if rest else "")


def _last_score_of(accepted: AcceptedScore) -> str:
    return f"{accepted.action_id} {accepted.score}"


def _last_score(item: dict[str, Any] | None) -> str:
    return str((item or {}).get("last_score", {}).get("S", ""))


def _read(user_id: str, receipt: Receipt | None) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """The player's item, and the receipt if there is one to look for (one request either way), strongly consistent:
    the score is decided on them."""
    if receipt is None:
        return player_item(user_id), None
    table = receipt.table
    request: Any = {
        settings.player_totals_table: {"Keys": [{"user_id": {"S": user_id}}], "ConsistentRead": True},
        table: {"Keys": [receipt.key], "ConsistentRead": True},
    }
    found = batch_get(request)
    players, receipts = found.get(settings.player_totals_table, []), found.get(table, [])
    live = [found for found in receipts if receipt.is_live(found, actions.now_ms())]
    return (players[0] if players else None), (live[0] if live else None)


def _announce(change: PlayerChanged) -> None:
    """Queue the change before writing it; if SQS fails, nothing is written and the client may retry."""
    try:
        sqs().send_message(QueueUrl=settings.scores_queue_url, MessageBody=change.message())
    except Exception as exc:
        raise ServiceUnavailable("The score could not be queued; nothing was recorded. Try again.") from exc


def _write(update: dict[str, Any], receipt: Receipt | None) -> bool:
    """Write the player's item (with the receipt, in one transaction); False if somebody changed it meanwhile."""
    client = dynamodb()
    try:
        if receipt is None:
            client.update_item(**update)
        else:
            # A token per attempt: botocore's own retries of it are no-ops if DynamoDB applied it already.
            transaction: Any = [{"Update": update}, {"Put": receipt.put(actions.now_ms())}]
            client.transact_write_items(TransactItems=transaction, ClientRequestToken=uuid.uuid4().hex)
    except (client.exceptions.ConditionalCheckFailedException, client.exceptions.TransactionCanceledException):
        return False
    return True


def _server_receipt(accepted: AcceptedScore, action: Action) -> Receipt:
    """A game server's action, in ActionsTable for good: the same score posted again is accepted again, once."""

    def answer(found: dict[str, Any]) -> AcceptedScore:
        if found["score"]["N"] != str(accepted.score):
            raise Conflict("This action already has a score.")
        return AcceptedScore(accepted.action_id, accepted.user_id, accepted.score, int(found["accepted_at"]["N"]))

    item = {
        "action_id": {"S": accepted.action_id},
        "user_id": {"S": accepted.user_id},
        "type": {"S": action.type},
        "score": {"N": str(accepted.score)},
        "accepted_at": {"N": str(accepted.accepted_at_ms)},
    }
    return Receipt(settings.actions_table, "action_id", item, answer)


def _idempotency_receipt(user_id: str, key: str, action_id: str, score: int) -> Receipt:
    """A player's Idempotency-Key, for 24 hours: the same key with the same body gets the first answer, with another
    body 422. Only an accepted score keeps its key: a refusal can be retried with the same key."""
    if not 1 <= len(key) <= MAX_IDEMPOTENCY_KEY or not key.isprintable() or not key.isascii():
        raise InvalidRequest(
            f"The Idempotency-Key header must be 1 to {MAX_IDEMPOTENCY_KEY} printable ASCII characters."
        )
    # The key is the caller's with their header: one player cannot replay another's.
    key_id = hashlib.sha256(f"{user_id}\n{key}".encode()).hexdigest()
    body = hashlib.sha256(json.dumps([user_id, action_id, score]).encode()).hexdigest()
    now_ms = actions.now_ms()

    def answer(found: dict[str, Any]) -> AcceptedScore:
        if found["body"]["S"] != body:
            raise UnprocessableContent("This Idempotency-Key was already used with another request body.")
        return AcceptedScore(action_id, user_id, score, int(found["accepted_at"]["N"]))

    item = {
        "id": {"S": key_id},
        "body": {"S": body},
        "accepted_at": {"N": str(now_ms)},
        "expiration": {"N": str(now_ms // 1000 + IDEMPOTENCY_SECONDS)},
    }
    return Receipt(settings.idempotency_table, "id", item, answer, expires=True)


# --- the ledger ------------------------------------------------------------------------------------------------------


@dataclass
class PlayerLedger:
    """A player's item in PlayerTotalsTable, as far as their points go."""

    display_name: str
    seasons: dict[SeasonKey, tuple[int, int]]
    rev: int
    banned_at_ms: int | None = None  # when a moderator banned the player (hidden from every board until unbanned)
    # Per season, when a moderator removed the player's points there: the boards refuse what was reached until then.
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
            rev=int(item.get("rev", {}).get("N", 0)),
            banned_at_ms=int(item["banned_at"]["N"]) if "banned_at" in item else None,
            fences={_season_key(key): int(value["N"]) for key, value in item.get("fences", {}).get("M", {}).items()},
            past_counters=_past_counters(item, now_ms) if now_ms else [],
        )

    def add(self, accepted: AcceptedScore, action: Action) -> list[SeasonKey]:
        """Count the score on every season it feeds (sum: points add up, the moment is the latest score's; best: the
        highest score, reached when it was first scored); the seasons it changed."""
        changed = []
        for definition in game().boards_fed_by(action.type, action.by_server):
            key = (definition.id, definition.season_at(accepted.accepted_at_ms).name)
            # Reached after the season's fence, whatever the clocks of two Lambdas say: the boards refuse up to it.
            moment = max(accepted.accepted_at_ms, self.fences.get(key, -1) + 1)
            points, reached = self.seasons.get(key, (0, 0))
            if definition.aggregate == "sum":
                self.seasons[key] = (points + accepted.score, max(reached, moment))
            elif key not in self.seasons or accepted.score > points:
                self.seasons[key] = (accepted.score, moment)
            else:
                continue
            changed.append(key)
        return changed

    def forget_unreadable(self, now_ms: int) -> None:
        """Drop the seasons no longer readable (their final top 100 is archived): the item stays small."""
        for board_id, season_name in list(self.seasons):
            if game().readable_season(board_id, season_name, now_ms) is None:
                del self.seasons[board_id, season_name]
        for key in list(self.fences):
            if game().readable_season(*key, now_ms) is None:
                del self.fences[key]


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


def player_item(user_id: str) -> dict[str, Any] | None:
    response = dynamodb().get_item(
        TableName=settings.player_totals_table, Key={"user_id": {"S": user_id}}, ConsistentRead=True
    )
    return response.get("Item")


@dataclass(frozen=True)
class HourlyLimit:
    """One of a player's counters of the clock hour (an attribute of their item; removed once its hour is over)."""

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
