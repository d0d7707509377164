"""What the live feed carries: the events published to the Event API's channels (each event one JSON text).

Every message about the board carries its version as `seq`: a client drops a message not newer than the last of its
type it applied.
"""

import json
from dataclasses import dataclass
from typing import Any

from leaderboard.board import RankChange, Snapshot
from leaderboard.game import ALL_TIME_BOARD


def encode(message: dict[str, Any]) -> str:
    """Compact JSON, as published."""
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False)


def board_channel(board_name: str) -> str:
    """Where a board's top 10 is published: anyone may subscribe."""
    return f"/boards/{board_name}"


def player_channel(user_id: str, board_name: str) -> str:
    """Where a player's own standing on a board is published: only that player may subscribe."""
    return f"/players/{user_id}" if board_name == ALL_TIME_BOARD else f"/players/{user_id}/{board_name}"


def top10_message(board_name: str, season: str, snapshot: Snapshot) -> str:
    """The top 10 of a board's season: the same objects as GET /v1/scores."""
    items = [entry.body() for entry in snapshot.top]
    return encode({"type": "top10", "board": board_name, "season": season, "seq": snapshot.seq, "items": items})


def rank_message(board_name: str, season: str, change: RankChange, seq: int) -> str:
    """To a watching player whose rank or score on the board changed (or who just subscribed)."""
    standing = change.standing.body()
    return encode(
        {
            "type": "rank",
            "seq": seq,
            **standing,
            "previous_rank": change.previous_rank,
            "board": board_name,
            "season": season,
        }
    )


@dataclass(frozen=True)
class Publish:
    """One publish request, as the Event API's HTTP endpoint takes it: one channel, up to five events."""

    channel: str
    events: tuple[str, ...]

    def body(self) -> dict[str, Any]:
        return {"channel": self.channel, "events": list(self.events)}
