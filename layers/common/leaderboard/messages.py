"""What the WebSocket API sends to clients (JSON text frames). Every message about the board carries its version as
`seq`: a client drops a message older than the last of its type it applied."""

import json
from typing import Any

from leaderboard.board import RankChange, Snapshot
from leaderboard.problems import Problem


def encode(message: dict[str, Any]) -> str:
    """Compact JSON, as sent."""
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False)


def top10_message(snapshot: Snapshot) -> str:
    """The top 10, pushed or asked for: the same objects as GET /v1/scores."""
    return encode({"type": "top10", "seq": snapshot.seq, "items": [entry.body() for entry in snapshot.top]})


def rank_message(change: RankChange, seq: int) -> str:
    """To a player's own connections when their rank or score changed."""
    return encode({"type": "rank", "seq": seq, **change.standing.body(), "previous_rank": change.previous_rank})


def error_message(problem: Problem) -> str:
    """The answer to a client's message that could not be served, with the problem details an HTTP client gets."""
    return encode({"type": "error", "problem": problem.body()})
