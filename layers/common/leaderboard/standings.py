"""Reading the boards: a season's standings come from Redis while the season is readable, from its archived top 100
after (archive.py). Unknown boards and seasons are 404; a query value that is not one is 400."""

import re
from collections.abc import Mapping
from dataclasses import dataclass

from leaderboard.archive import archived_top
from leaderboard.board import AROUND, TOP, Standing, open_board
from leaderboard.game import BoardDefinition, game
from leaderboard.problems import InvalidRequest, NotFound
from leaderboard.seasons import Season, is_season_name

MAX_LIMIT = 100
# Past this, a page is empty on any board Redis can hold; a bigger offset is a mistake, not a request.
MAX_OFFSET = 10**9
_USER_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_NUMBER = re.compile(r"[0-9]{1,10}")


@dataclass(frozen=True)
class SeasonStandings:
    """One season of one board, as readers see it."""

    definition: BoardDefinition
    season: Season
    archived: list[Standing] | None  # None: the season is readable in Redis

    def page(self, offset: int, limit: int) -> list[Standing]:
        if self.archived is not None:
            return self.archived[offset : offset + limit]
        return open_board(self.definition, self.season).page(offset, limit)

    def standing(self, user_id: str) -> tuple[Standing, list[Standing]] | None:
        """The player's standing and up to AROUND players above and below (the player included)."""
        if not _USER_ID.fullmatch(user_id):
            return None
        if self.archived is None:
            return open_board(self.definition, self.season).standing(user_id, AROUND)
        index = next((i for i, standing in enumerate(self.archived) if standing.user_id == user_id), None)
        if index is None:
            return None
        return self.archived[index], self.archived[max(index - AROUND, 0) : index + AROUND + 1]

    def labels(self) -> dict[str, str]:
        return {"board": self.definition.id, "season": self.season.name}


def season_standings(board_id: str, season_name: str | None, now_ms: int) -> SeasonStandings:
    """The season `season_name` of the board (its current one if None). A malformed season name is 400 whatever the
    board: every query value is checked before anything is looked up."""
    if season_name is not None and not is_season_name(season_name):
        raise InvalidRequest("season: a season is named like all, 2026-12-01, 2026-W49 or 2026-12.")
    definition = game().boards.get(board_id)
    if definition is None:
        raise NotFound("There is no such board; GET /v1/boards lists them.")
    if season_name is None:
        return SeasonStandings(definition, definition.season_at(now_ms), None)
    season = definition.season_named(season_name)
    if season is None or not season.started_by(now_ms):
        raise NotFound("This board has no such season.")
    if definition.is_readable(season, now_ms):
        return SeasonStandings(definition, season, None)
    archived = archived_top(definition.id, season.name)
    if archived is None:
        raise NotFound("This season is no longer kept.")
    return SeasonStandings(definition, season, archived)


def query(event_params: Mapping[str, str] | None, allowed: tuple[str, ...]) -> dict[str, str]:
    """The query string's parameters; 400 for one the route does not take."""
    params = dict(event_params or {})
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        takes = f"this route takes {', '.join(allowed)}" if allowed else "this route takes none"
        raise InvalidRequest(f"Unknown query parameter {unknown[0]!r}; {takes}.")
    return params


def whole_number(params: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    """A query parameter holding a whole number from `low` to `high` (`default` when absent); 400 otherwise."""
    text = params.get(name)
    if text is None:
        return default
    if not _NUMBER.fullmatch(text) or not low <= int(text) <= high:
        raise InvalidRequest(f"{name}: a whole number from {low} to {high}.")
    return int(text)


def page_bounds(params: Mapping[str, str]) -> tuple[int, int]:
    """`offset` (default 0) and `limit` (default 10, at most 100)."""
    return whole_number(params, "offset", 0, 0, MAX_OFFSET), whole_number(params, "limit", TOP, 1, MAX_LIMIT)
