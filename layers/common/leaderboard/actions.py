"""Actions: a match, a level, a quest. A player starts one, finishes it, and may score it once.

A started action lives on the player's item in PlayerTotalsTable, in the set of their open actions of its type
(`open:<type>`), so starting one is one write and the set's size is the cap on open actions (`max_open`, game.py).
Its id carries its type, the moment it started and a tag of its player, so a score can be checked against the game's
rules, and an action no longer open told apart from someone else's (409 or 404), without a read. Scoring moves the
action out of the set and its score into the player's points (scores.py). An action never scored leaves the set once
it expired and the player needs the room.
"""

import hashlib
import math
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any

from leaderboard.aws import dynamodb
from leaderboard.config import settings
from leaderboard.game import ActionType, game
from leaderboard.problems import Forbidden, ServiceUnavailable, TooManyRequests
from leaderboard.seasons import rfc3339
from leaderboard.security_events import SecurityEvent

# "<type>.<the moment it started, ms, hex>.<the player's tag, 32 bits><48 random bits>"
_ACTION_ID = re.compile(
    r"^(?P<type>[a-z0-9][a-z0-9-]{0,15})\.(?P<started>[0-9a-f]{1,12})\.(?P<owner>[0-9a-f]{8})[0-9a-f]{12}$"
)
_SERVER_PREFIX = "server/"
# Others start actions at the same time (another device); a retry with what they wrote usually goes through.
_CONFLICT_RETRIES = 3


class UnknownActionType(Exception):
    """The game defines no such action type."""


@dataclass(frozen=True)
class Action:
    action_id: str
    kind: ActionType
    started_at_ms: int

    @property
    def type(self) -> str:
        return self.kind.name

    @property
    def expires_at_ms(self) -> int:
        return self.started_at_ms + self.kind.lifetime_seconds * 1000

    @property
    def scorable_at_ms(self) -> int:
        return self.started_at_ms + self.kind.min_duration_seconds * 1000

    def body(self) -> dict[str, Any]:
        """What the player is told of the action (times in whole seconds: it expires no later, and can be scored no
        earlier, than it says)."""
        return {
            "action_id": self.action_id,
            "type": self.type,
            "max_score": self.kind.max_score,
            "expires_at": rfc3339(self.expires_at_ms // 1000 * 1000),
            "scorable_at": rfc3339(math.ceil(self.scorable_at_ms / 1000) * 1000),
        }

    @property
    def by_server(self) -> bool:
        """A game server's action (POST /v1/server/scores): never open, never held to the players' limits."""
        return self.action_id.startswith(_SERVER_PREFIX)

    @classmethod
    def of_server(cls, user_id: str, server_action_id: str, kind: ActionType, now_ms: int) -> "Action":
        """A game server's action for one player: keyed per player, since one match of the server's is many players'
        scores."""
        return cls(f"{_SERVER_PREFIX}{user_id}/{server_action_id}", kind, now_ms)

    @classmethod
    def new(cls, kind: ActionType, now_ms: int, user_id: str) -> "Action":
        return cls(f"{kind.name}.{now_ms:x}.{_owner_tag(user_id)}{secrets.token_hex(6)}", kind, now_ms)

    def belongs_to(self, user_id: str) -> bool:
        """Whether the action was started by this player, as far as its id says (not a secret: it only tells a
        player's own scored action (409) from someone else's (404))."""
        match = _ACTION_ID.fullmatch(self.action_id)
        return match is not None and match["owner"] == _owner_tag(user_id)

    @classmethod
    def parse(cls, action_id: str) -> "Action | None":
        """The action this id names, if it is an id this API gives out for a type the game defines."""
        match = _ACTION_ID.fullmatch(action_id)
        kind = game().action_types.get(match["type"]) if match else None
        return cls(action_id, kind, int(match["started"], 16)) if match and kind else None


def _owner_tag(user_id: str) -> str:
    return hashlib.sha256(user_id.encode()).hexdigest()[:8]


def now_ms() -> int:
    """The wall clock, in ms: what actions and scores are timed by."""
    return int(time.time() * 1000)


def open_actions_attribute(action_type: str) -> str:
    """The player item's set of their open actions of this type."""
    return f"open:{action_type}"


def start_action(user_id: str, action_type: str) -> Action:
    """Record a new open action of `user_id`; 429 while they have `max_open` of its type open, unexpired."""
    kind = game().action_types.get(action_type)
    if kind is None:
        raise UnknownActionType(action_type)
    action = Action.new(kind, now_ms(), user_id)
    client = dynamodb()
    # Most starts find room: one blind write. A full set is read back and its expired actions dropped.
    update: dict[str, Any] = {
        "UpdateExpression": "ADD #open :action",
        "ConditionExpression": (
            "attribute_not_exists(banned_at) AND (attribute_not_exists(#open) OR size(#open) < :max)"
        ),
        "ExpressionAttributeValues": {":action": {"SS": [action.action_id]}, ":max": {"N": str(kind.max_open)}},
    }
    for _ in range(_CONFLICT_RETRIES + 1):
        try:
            client.update_item(
                TableName=settings.player_totals_table,
                Key={"user_id": {"S": user_id}},
                ExpressionAttributeNames={"#open": open_actions_attribute(action_type)},
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
                **update,
            )
            return action
        except client.exceptions.ConditionalCheckFailedException as exc:
            found: Any = exc.response.get("Item") or {}
            update = _make_room(found, action)
    raise ServiceUnavailable("The action could not be started yet; try again.", retry_after=1)


def _make_room(item: dict[str, Any], action: Action) -> dict[str, Any]:
    """The write that replaces the player's open actions by the unexpired ones and the new one, on condition that
    nobody changed them meanwhile; 429 if the unexpired ones fill the cap, 403 if the player is banned."""
    if "banned_at" in item:
        raise Forbidden("This player is banned.", security_event=SecurityEvent.BANNED_PLAYER_REFUSED)
    open_ids = item.get(open_actions_attribute(action.type), {}).get("SS", [])
    unexpired = [
        found
        for found in (Action.parse(action_id) for action_id in open_ids)
        if found and found.expires_at_ms > action.started_at_ms
    ]
    if len(unexpired) >= action.kind.max_open:
        soonest = min(found.expires_at_ms for found in unexpired)
        raise TooManyRequests(
            f"You already have {action.kind.max_open} {action.type} actions open; score or let one expire first.",
            retry_after=max(1, math.ceil((soonest - action.started_at_ms) / 1000)),
            security_event=SecurityEvent.FARMING_REFUSED,
        )
    values: dict[str, Any] = {":kept": {"SS": [found.action_id for found in unexpired] + [action.action_id]}}
    unchanged = ["attribute_not_exists(banned_at)"]
    if open_ids:
        values[":seen"] = {"N": str(len(open_ids))}
        unchanged.append("size(#open) = :seen")
    else:
        unchanged.append("attribute_not_exists(#open)")
    for index, action_id in enumerate(open_ids):
        values[f":o{index}"] = {"S": action_id}
        unchanged.append(f"contains(#open, :o{index})")
    return {
        "UpdateExpression": "SET #open = :kept",
        "ConditionExpression": " AND ".join(unchanged),
        "ExpressionAttributeValues": values,
    }
