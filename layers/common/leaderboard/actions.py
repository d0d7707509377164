"""Actions: a match, a level, a quest. A player starts one, finishes it, and may score it once.

Action types are defined with the boards, in the game's definitions (game.py). An unscored action expires; the
table's TTL removes it a day later. A scored action is part of the ledger and is never removed.
"""

import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from leaderboard.aws import dynamodb
from leaderboard.config import settings
from leaderboard.game import game

# How long an expired, unscored action is kept (so a late score gets 409 "expired", not 404).
PURGE_AFTER_SECONDS = 24 * 3600


class UnknownActionType(Exception):
    """The game defines no such action type."""


@dataclass(frozen=True)
class Action:
    action_id: str
    user_id: str
    type: str
    max_score: int
    expires_at: int

    def body(self) -> dict[str, Any]:
        """What the player is told of the action."""
        expires = datetime.fromtimestamp(self.expires_at, UTC).isoformat().replace("+00:00", "Z")
        return {"action_id": self.action_id, "type": self.type, "max_score": self.max_score, "expires_at": expires}


def start_action(user_id: str, action_type: str) -> Action:
    """Record a new action owned by `user_id`."""
    kind = game().action_types.get(action_type)
    if kind is None:
        raise UnknownActionType(action_type)
    now = int(time.time())
    action = Action(
        action_id=uuid.uuid4().hex,
        user_id=user_id,
        type=action_type,
        max_score=kind.max_score,
        expires_at=now + kind.lifetime_seconds,
    )
    dynamodb().put_item(
        TableName=settings.actions_table,
        Item={
            "action_id": {"S": action.action_id},
            "user_id": {"S": user_id},
            "type": {"S": action_type},
            "max_score": {"N": str(action.max_score)},
            "created_at": {"N": str(now)},
            "expires_at": {"N": str(action.expires_at)},
            "purge_at": {"N": str(action.expires_at + PURGE_AFTER_SECONDS)},
        },
        ConditionExpression="attribute_not_exists(action_id)",
    )
    return action
