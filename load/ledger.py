"""What the load's users saw, handed from the locust process to the runner as one JSON file at the end of a run."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

# What every player plays: its scores feed the boards whose `action_types` name it (the game's definition).
ACTION_TYPE = "match"


@dataclass(frozen=True)
class AcceptedScore:
    """A score the API accepted (202), and when, by the load generator's clock (epoch seconds): the API accepted it
    between the post's sending and its answer, so that is the season it counts for, unless a reset falls between."""

    score: int
    sent_at: float
    answered_at: float


@dataclass
class PlayerRecord:
    """One player: every score the API accepted (202) for them, in order. A replay with the same Idempotency-Key is
    not a new score. ``unsettled`` counts posts whose answer never came: whether they were accepted is unknown."""

    user_id: str
    accepted: list[AcceptedScore] = field(default_factory=list)
    unsettled: int = 0

    @property
    def accepted_points(self) -> int:
        return sum(accepted.score for accepted in self.accepted)


@dataclass
class ViewerRecord:
    """One anonymous viewer of a board's live feed: the top-10 messages received, those that arrived after a newer
    one (dropped, as the contract asks: publishes may arrive out of order), the last ``seq`` applied per season, and
    anything that went wrong (a refusal, a dropped connection, one ``seq`` with two boards, a malformed board)."""

    board: str
    top10_messages: int = 0
    out_of_order: int = 0
    keep_alives: int = 0
    last_seq: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


@dataclass
class Ledger:
    """Every player and viewer of one run."""

    players: list[PlayerRecord] = field(default_factory=list)
    viewers: list[ViewerRecord] = field(default_factory=list)

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=1))

    @classmethod
    def read(cls, path: Path) -> Ledger:
        data = json.loads(path.read_text())
        return cls(
            players=[
                PlayerRecord(
                    user_id=player["user_id"],
                    accepted=[AcceptedScore(**accepted) for accepted in player["accepted"]],
                    unsettled=player["unsettled"],
                )
                for player in data["players"]
            ],
            viewers=[ViewerRecord(**viewer) for viewer in data["viewers"]],
        )
