"""The game's definitions: its action types and its boards, one JSON document in template.yaml (`GAME`).

Adding a board is an edit of that document and a deploy, no code. A board has:
- `id` (its name in paths and channels) and `title` (what the page shows);
- `action_types`: the actions whose scores feed it (one score feeds every board of its type, see scores.py);
- `aggregate`: `sum` (a player's points add up) or `best` (a player's highest single score);
- `reset`: `none`, `daily`, `weekly` or `monthly`, at 00:00 UTC (seasons.py);
- `readable_days`: how long an ended season stays readable in full (at least 1 for a board that resets: a score
  accepted just before a reset is applied after it, and the season is archived after it); its final top 100 is
  archived for good.
- `server_scores_only` (false): the board takes only scores the studio's game servers post (POST
  /v1/server/scores), none that players post themselves.
The board `global` must be there and never reset: GET /v1/scores and a player's own channel are its.

An action type has `max_score` and `lifetime_seconds` (how long a started action can be scored), and the fair-play
limits on what players post themselves (scores from the studio's servers skip them, scores.py):
- `min_duration_seconds` (0): how long after starting an action it can be scored (earlier: 422);
- `max_open` (10): how many actions of the type a player may have started and not yet scored (429 past it);
- `max_scores_per_hour`, `max_points_per_hour` (no limit): per player, per clock hour (429 past them).
"""

import json
import re
from dataclasses import dataclass
from functools import cache
from typing import Any, Literal, cast, get_args

from leaderboard.config import ConfigurationError, settings
from leaderboard.seasons import RESETS, Reset, Season, rfc3339, season_at, season_named

Aggregate = Literal["sum", "best"]
DEFAULT_ACTION_TYPE = "match"
ALL_TIME_BOARD = "global"
_DAY_MS = 86_400_000
_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")
# Open actions are kept on the player's item (actions.py): a few dozen ids fit in its KB and in one condition.
MAX_OPEN = 20
# Short: an action's id carries its type (actions.py).
_ACTION_TYPE = re.compile(r"^[a-z0-9][a-z0-9-]{0,15}$")


@dataclass(frozen=True)
class ActionType:
    name: str
    max_score: int
    lifetime_seconds: int
    min_duration_seconds: int = 0
    max_open: int = 10
    max_scores_per_hour: int | None = None
    max_points_per_hour: int | None = None


@dataclass(frozen=True)
class BoardDefinition:
    id: str
    title: str
    action_types: tuple[str, ...]
    aggregate: Aggregate
    reset: Reset
    readable_days: int
    server_scores_only: bool = False

    def season_at(self, moment_ms: int) -> Season:
        return season_at(self.reset, moment_ms)

    def season_named(self, name: str) -> Season | None:
        return season_named(self.reset, name)

    def expires_at_ms(self, season: Season) -> int | None:
        """When an ended season stops being readable in full (its Redis keys expire then); None: never."""
        return None if season.ends_at_ms is None else season.ends_at_ms + self.readable_days * _DAY_MS

    def is_readable(self, season: Season, now_ms: int) -> bool:
        """The season has started and, if it ended, is still within its readable days."""
        expires = self.expires_at_ms(season)
        return season.started_by(now_ms) and (expires is None or now_ms < expires)

    def body(self, now_ms: int) -> dict[str, Any]:
        """What GET /v1/boards says of the board: its definition and its current season."""
        season = self.season_at(now_ms)
        return {
            "id": self.id,
            "title": self.title,
            "aggregate": self.aggregate,
            "reset": self.reset,
            "season": season.name,
            "starts_at": rfc3339(season.starts_at_ms),
            "ends_at": rfc3339(season.ends_at_ms),
        }


@dataclass(frozen=True)
class Game:
    action_types: dict[str, ActionType]
    boards: dict[str, BoardDefinition]

    def boards_fed_by(self, action_type: str, by_server: bool) -> list[BoardDefinition]:
        """The boards a score of this type feeds: a player's own scores skip the boards of server scores only."""
        return [
            definition
            for definition in self.boards.values()
            if action_type in definition.action_types and (by_server or not definition.server_scores_only)
        ]

    def season(self, board_id: str, season_name: str) -> tuple[BoardDefinition, Season] | None:
        """The board and its season of these names; None if the game has no such board (since removed from its
        definitions, say) or the board no such season."""
        definition = self.boards.get(board_id)
        season = definition.season_named(season_name) if definition else None
        return (definition, season) if definition and season else None

    def readable_season(self, board_id: str, season_name: str, now_ms: int) -> tuple[BoardDefinition, Season] | None:
        """The same, if the season is readable at `now_ms`."""
        found = self.season(board_id, season_name)
        return found if found and found[0].is_readable(found[1], now_ms) else None


def game() -> Game:
    """The game this stack is deployed with (GAME, parsed once per process and checked)."""
    return parse(settings.game)


@cache
def parse(document: str) -> Game:
    """The game a GAME document defines; ConfigurationError says what is wrong with it."""
    try:
        raw = json.loads(document)
        action_types = {str(name): _action_type(str(name), kind) for name, kind in raw["action_types"].items()}
        boards = [_board(entry) for entry in raw["boards"]]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ConfigurationError(f"GAME is not a valid game definition: {exc!r}") from None
    by_id = {definition.id: definition for definition in boards}
    problems = [f"board ids repeat: {sorted(by_id)}"] if len(by_id) != len(boards) else []
    if DEFAULT_ACTION_TYPE not in action_types:
        problems.append(f"the default action type {DEFAULT_ACTION_TYPE!r} is not defined")
    if ALL_TIME_BOARD not in by_id or by_id[ALL_TIME_BOARD].reset != "none":
        problems.append(f"a board {ALL_TIME_BOARD!r} that never resets is required (GET /v1/scores shows it)")
    for definition in boards:
        unknown = set(definition.action_types) - set(action_types)
        if unknown:
            problems.append(f"board {definition.id!r} is fed by undefined action types {sorted(unknown)}")
    if problems:
        raise ConfigurationError("GAME: " + "; ".join(problems))
    return Game(action_types, by_id)


def _action_type(name: str, entry: dict[str, Any]) -> ActionType:
    def limit(key: str) -> int | None:
        return None if entry.get(key) is None else int(entry[key])

    kind = ActionType(
        name=name,
        max_score=int(entry["max_score"]),
        lifetime_seconds=int(entry["lifetime_seconds"]),
        min_duration_seconds=int(entry.get("min_duration_seconds", 0)),
        max_open=int(entry.get("max_open", ActionType.max_open)),
        max_scores_per_hour=limit("max_scores_per_hour"),
        max_points_per_hour=limit("max_points_per_hour"),
    )
    if not _ACTION_TYPE.match(name):
        raise ValueError(f"action type {name!r}: 1 to 16 of a-z, 0-9 and '-'")
    if kind.max_score < 1 or kind.lifetime_seconds < 1:
        raise ValueError(f"action type {name!r}: max_score and lifetime_seconds are at least 1")
    if not 1 <= kind.max_open <= MAX_OPEN:
        raise ValueError(f"action type {name!r}: max_open is 1 to {MAX_OPEN}")
    if not 0 <= kind.min_duration_seconds < kind.lifetime_seconds:
        raise ValueError(f"action type {name!r}: 0 <= min_duration_seconds < lifetime_seconds")
    if kind.max_scores_per_hour is not None and kind.max_scores_per_hour < 1:
        raise ValueError(f"action type {name!r}: max_scores_per_hour is at least 1 (or absent: no limit)")
    if kind.max_points_per_hour is not None and kind.max_points_per_hour < kind.max_score:
        raise ValueError(f"action type {name!r}: max_points_per_hour is at least max_score (or absent: no limit)")
    return kind


def _board(entry: dict[str, Any]) -> BoardDefinition:
    definition = BoardDefinition(
        id=str(entry["id"]),
        title=str(entry["title"]),
        action_types=tuple(str(name) for name in entry["action_types"]),
        aggregate=cast(Aggregate, entry["aggregate"]),
        reset=cast(Reset, entry["reset"]),
        readable_days=int(entry.get("readable_days", 0)),
        server_scores_only=entry.get("server_scores_only", False),
    )
    if not _ID.match(definition.id):
        raise ValueError(f"board id {definition.id!r}: 1 to 32 of a-z, 0-9 and '-'")
    if definition.aggregate not in get_args(Aggregate):
        raise ValueError(f"board {definition.id!r}: aggregate is one of {get_args(Aggregate)}")
    if definition.reset not in RESETS:
        raise ValueError(f"board {definition.id!r}: reset is one of {RESETS}")
    if not isinstance(definition.server_scores_only, bool):
        raise ValueError(f"board {definition.id!r}: server_scores_only is true or false")
    if not definition.action_types:
        raise ValueError(f"board {definition.id!r}: at least one action type")
    if definition.reset != "none" and definition.readable_days < 1:
        raise ValueError(f"board {definition.id!r}: readable_days >= 1 (late scores and the archive need a day)")
    return definition
