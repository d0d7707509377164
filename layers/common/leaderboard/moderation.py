"""Moderation: what the studio's operators do to keep the boards honest, on IAM-authorized routes (never a player
token).

- Remove a player's points from one season of a board.
- Ban a player: their actions and scores are refused, and their standings hidden from every board (rebuilds
  included) until they are unbanned. Unban them.

Each is one transaction: the change to the player's ledger item, on condition that nobody changed it meanwhile
(`rev`), and its record in the audit trail (ModerationAuditTable: who, what, to whom, why, when). The boards in Redis
follow: the player's entries are taken off and fenced (board.py), so a score in flight when the operator acted cannot
put them back, and the consumer and the rebuild read a ledger that no longer shows them.
"""

import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

from leaderboard import board_sync, live, scores
from leaderboard.actions import now_ms
from leaderboard.aws import dynamodb
from leaderboard.board import PlayerTotal, open_board
from leaderboard.config import settings
from leaderboard.game import BoardDefinition, game
from leaderboard.problems import Conflict, NotFound, ServiceUnavailable
from leaderboard.seasons import Season, rfc3339
from leaderboard.security_events import SecurityEvent, record

_CONFLICT_RETRIES = 3


@dataclass(frozen=True)
class Decision:
    """One moderation action, as the audit trail keeps it."""

    audit_id: str
    action: str  # "remove_points", "ban" or "unban"
    user_id: str
    operator: str  # the IAM principal's ARN
    reason: str
    at_ms: int
    board: str | None = None
    season: str | None = None
    points: int | None = None  # the points removed

    def body(self) -> dict[str, Any]:
        fields = {
            "audit_id": self.audit_id,
            "action": self.action,
            "user_id": self.user_id,
            "operator": self.operator,
            "reason": self.reason,
            "at": rfc3339(self.at_ms, "milliseconds"),
            "board": self.board,
            "season": self.season,
            "points": self.points,
        }
        return {name: value for name, value in fields.items() if value is not None}

    def audit_item(self) -> dict[str, Any]:
        item: dict[str, Any] = {
            "user_id": {"S": self.user_id},
            "audit_id": {"S": self.audit_id},
            "action": {"S": self.action},
            "operator": {"S": self.operator},
            "reason": {"S": self.reason},
            "at_ms": {"N": str(self.at_ms)},
        }
        for name, value in (("board", self.board), ("season", self.season)):
            if value is not None:
                item[name] = {"S": value}
        if self.points is not None:
            item["points"] = {"N": str(self.points)}
        return item


def remove_points(operator: str, user_id: str, board_id: str, season_name: str, reason: str) -> Decision:
    """Take the player's points off a season of a board: the ledger forgets them, scores accepted until now that are
    still on their way count no more there, and the board drops the player (until they score again)."""
    found = game().season(board_id, season_name)
    if found is None:
        raise NotFound("There is no such board or season.")
    key = (board_id, season_name)

    def change(ledger: scores.PlayerLedger, decision: Decision) -> Decision:
        points, _ = ledger.seasons.pop(key, (None, 0))
        if points is None and key not in ledger.fences:
            raise NotFound("The player has no points on this season of the board.")
        ledger.fences[key] = decision.at_ms
        return replace(decision, board=board_id, season=season_name, points=points or 0)

    decision, _ = _decide(operator, user_id, "remove_points", reason, change)
    _take_off(user_id, [found], decision.at_ms)
    return decision


def ban(operator: str, user_id: str, reason: str) -> Decision:
    """Ban the player: refused from now on, and hidden from every board they are on."""

    def change(ledger: scores.PlayerLedger, decision: Decision) -> Decision:
        if ledger.banned_at_ms is None:  # banned again (a retry): the first moment stands
            ledger.banned_at_ms = decision.at_ms
        return decision

    decision, ledger = _decide(operator, user_id, "ban", reason, change)
    _take_off(user_id, _readable(ledger), ledger.banned_at_ms or decision.at_ms)
    return decision


def unban(operator: str, user_id: str, reason: str) -> Decision:
    """Lift the player's ban: they play again, and their standings are back on every board."""

    def change(ledger: scores.PlayerLedger, decision: Decision) -> Decision:
        if ledger.banned_at_ms is None:
            raise Conflict("This player is not banned.")
        ledger.banned_at_ms = None
        return decision

    decision, ledger = _decide(operator, user_id, "unban", reason, change)
    points: dict[scores.SeasonKey, list[PlayerTotal]] = {}
    for definition, season in _readable(ledger):
        open_board(definition, season).lift(user_id)
        key = (definition.id, season.name)
        if key in ledger.seasons:
            total, reached_at_ms = ledger.seasons[key]
            points[key] = [PlayerTotal(user_id, ledger.display_name, total, reached_at_ms)]
    board_sync.update_boards(points, now_ms())
    return decision


def _decide(
    operator: str, user_id: str, action: str, reason: str, change: Callable[[scores.PlayerLedger, Decision], Decision]
) -> tuple[Decision, scores.PlayerLedger]:
    """Apply `change` to the player's ledger and record the decision, in one transaction; again if the player's item
    changed meanwhile (a score was applied). The decision, and the ledger as written."""
    client = dynamodb()
    for _ in range(_CONFLICT_RETRIES):
        item = scores.player_item(user_id)
        if item is None or "display_name" not in item:
            raise NotFound("There is no such player.")
        ledger = scores.PlayerLedger.of(item)
        at_ms = now_ms()
        # Sorted by time, and unique: a player's history reads in order.
        audit_id = f"{rfc3339(at_ms, 'milliseconds')}#{uuid.uuid4().hex[:12]}"
        decision = change(ledger, Decision(audit_id, action, user_id, operator, reason, at_ms))
        audit: Any = {"TableName": settings.moderation_audit_table, "Item": decision.audit_item()}
        try:
            client.transact_write_items(
                TransactItems=[{"Update": scores.ledger_update(user_id, ledger)}, {"Put": audit}]
            )
        except client.exceptions.TransactionCanceledException:
            continue
        record(SecurityEvent.MODERATION, user=user_id, address=operator)
        return decision, ledger
    raise ServiceUnavailable("The player kept changing; try again.", retry_after=1)


def _readable(ledger: scores.PlayerLedger) -> list[tuple[BoardDefinition, Season]]:
    """The readable seasons the player has points on."""
    moment = now_ms()
    return [found for key in ledger.seasons if (found := game().readable_season(*key, moment))]


def _take_off(user_id: str, seasons: Iterable[tuple[BoardDefinition, Season]], fence_ms: int) -> None:
    """Take the player off these seasons' rankings, fenced at `fence_ms`; publish the change where it is on show."""
    moment = now_ms()
    leases = []
    for definition, season in seasons:
        board = open_board(definition, season)
        leases.append((board, board.remove(user_id, fence_ms, live=definition.season_at(moment) == season).lease))
    live.wake_publishers(leases)
