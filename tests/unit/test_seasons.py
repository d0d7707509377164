"""Season arithmetic: UTC boundaries, ISO weeks, month ends, the leap day; and the game's definitions."""

import json
from datetime import datetime
from pathlib import Path

import pytest

from leaderboard.config import ConfigurationError
from leaderboard.game import parse
from leaderboard.seasons import Season, is_season_name, previous, rfc3339, season_at, season_named
from local.template import Template


def ms(text: str) -> int:
    """An RFC 3339 UTC moment as epoch milliseconds."""
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


@pytest.mark.parametrize(
    ("reset", "moment", "name", "starts", "ends"),
    [
        ("none", "2026-12-01T12:00:00Z", "all", None, None),
        ("daily", "2026-12-01T00:00:00Z", "2026-12-01", "2026-12-01T00:00:00Z", "2026-12-02T00:00:00Z"),
        ("daily", "2026-12-01T23:59:59.999Z", "2026-12-01", "2026-12-01T00:00:00Z", "2026-12-02T00:00:00Z"),
        ("daily", "2028-02-29T13:00:00Z", "2028-02-29", "2028-02-29T00:00:00Z", "2028-03-01T00:00:00Z"),  # leap day
        ("weekly", "2026-12-01T10:00:00Z", "2026-W49", "2026-11-30T00:00:00Z", "2026-12-07T00:00:00Z"),
        ("weekly", "2026-12-06T23:59:59.999Z", "2026-W49", "2026-11-30T00:00:00Z", "2026-12-07T00:00:00Z"),
        ("weekly", "2026-12-07T00:00:00Z", "2026-W50", "2026-12-07T00:00:00Z", "2026-12-14T00:00:00Z"),
        # The ISO week that spans a new year belongs to the year of its Thursday.
        ("weekly", "2027-01-01T08:00:00Z", "2026-W53", "2026-12-28T00:00:00Z", "2027-01-04T00:00:00Z"),
        ("weekly", "2024-12-31T08:00:00Z", "2025-W01", "2024-12-30T00:00:00Z", "2025-01-06T00:00:00Z"),
        ("monthly", "2026-12-31T23:59:59.999Z", "2026-12", "2026-12-01T00:00:00Z", "2027-01-01T00:00:00Z"),
        ("monthly", "2026-04-30T12:00:00Z", "2026-04", "2026-04-01T00:00:00Z", "2026-05-01T00:00:00Z"),
        ("monthly", "2028-02-29T23:00:00Z", "2028-02", "2028-02-01T00:00:00Z", "2028-03-01T00:00:00Z"),  # leap year
    ],
)
def test_a_moment_falls_in_the_season_named_by_its_utc_period(
    reset: str, moment: str, name: str, starts: str | None, ends: str | None
) -> None:
    season = season_at(reset, ms(moment))  # type: ignore[arg-type]

    assert season.name == name
    assert (rfc3339(season.starts_at_ms), rfc3339(season.ends_at_ms)) == (starts, ends)
    assert season_named(reset, name) == season  # type: ignore[arg-type]


def test_the_last_millisecond_before_a_reset_and_the_reset_itself_are_in_different_seasons() -> None:
    before, at = ms("2026-12-31T23:59:59.999Z"), ms("2027-01-01T00:00:00Z")

    for reset, old, new in [("daily", "2026-12-31", "2027-01-01"), ("monthly", "2026-12", "2027-01")]:
        assert season_at(reset, before).name == old  # type: ignore[arg-type]
        assert season_at(reset, at).name == new  # type: ignore[arg-type]
        assert season_at(reset, before).ends_at_ms == at  # type: ignore[arg-type]
    assert season_at("weekly", before).name == season_at("weekly", at).name == "2026-W53"  # mid-week


@pytest.mark.parametrize(
    ("reset", "name", "before"),
    [
        ("daily", "2028-03-01", "2028-02-29"),
        ("daily", "2027-01-01", "2026-12-31"),
        ("weekly", "2027-W01", "2026-W53"),
        ("weekly", "2026-W01", "2025-W52"),
        ("monthly", "2027-01", "2026-12"),
        ("monthly", "2026-03", "2026-02"),
    ],
)
def test_the_season_before_is_the_previous_period(reset: str, name: str, before: str) -> None:
    season = season_named(reset, name)  # type: ignore[arg-type]

    assert season is not None
    assert previous(reset, season).name == before  # type: ignore[arg-type]


def test_all_time_has_no_season_before_it() -> None:
    assert previous("none", Season("all", None, None)) == Season("all", None, None)


@pytest.mark.parametrize(
    ("reset", "name"),
    [
        ("daily", "2026-02-29"),  # not a leap year
        ("daily", "2026-13-01"),
        ("daily", "2026-12-1"),
        ("weekly", "2025-W53"),  # 2025 has 52 ISO weeks
        ("weekly", "2026-W00"),
        ("weekly", "2026-W7"),
        ("monthly", "2026-00"),
        ("monthly", "2026-12-01"),  # a day, not a month
        ("none", "2026"),
        ("weekly", "all"),
        ("daily", "9999-12-31"),  # would end after the last date Python (and anyone) can name
        ("weekly", "9999-W52"),
        ("monthly", "9999-12"),
        ("daily", "0000-01-01"),
    ],
)
def test_a_name_that_is_not_one_of_the_periods_seasons_names_none(reset: str, name: str) -> None:
    assert season_named(reset, name) is None  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("name", "is_one"),
    [("all", True), ("2026-12-01", True), ("2026-W49", True), ("2026-12", True), ("2026-W54", False), ("now", False)],
)
def test_season_names_of_any_period_are_told_from_malformed_ones(name: str, is_one: bool) -> None:
    assert is_season_name(name) is is_one


GAME = {
    "action_types": {"match": {"max_score": 1000, "lifetime_seconds": 3600}},
    "boards": [
        {"id": "global", "title": "All", "action_types": ["match"], "aggregate": "sum", "reset": "none"},
        {
            "id": "weekly",
            "title": "W",
            "action_types": ["match"],
            "aggregate": "sum",
            "reset": "weekly",
            "readable_days": 28,
        },
    ],
}


def test_a_board_is_readable_from_its_start_until_its_readable_days_after_its_end() -> None:
    weekly = parse(json.dumps(GAME)).boards["weekly"]
    season = weekly.season_at(ms("2026-12-01T00:00:00Z"))  # 2026-W49, ends 2026-12-07

    assert not weekly.is_readable(season, ms("2026-11-29T23:59:59.999Z"))
    assert weekly.is_readable(season, ms("2026-12-30T00:00:00Z"))
    assert weekly.expires_at_ms(season) == ms("2027-01-04T00:00:00Z")
    assert not weekly.is_readable(season, ms("2027-01-04T00:00:00Z"))


def test_the_boards_api_body_gives_the_current_season_and_the_next_reset() -> None:
    game = parse(json.dumps(GAME))

    assert game.boards["weekly"].body(ms("2026-12-01T09:30:00Z")) == {
        "id": "weekly",
        "title": "W",
        "aggregate": "sum",
        "reset": "weekly",
        "season": "2026-W49",
        "starts_at": "2026-11-30T00:00:00Z",
        "ends_at": "2026-12-07T00:00:00Z",
    }
    assert game.boards["global"].body(0)["season"] == "all"
    assert game.boards["global"].body(0)["ends_at"] is None


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        (lambda g: g["boards"].append(dict(g["boards"][0])), "repeat"),
        (lambda g: g["boards"][1].update(action_types=["quest"]), "undefined action types"),
        (lambda g: g["boards"][1].update(reset="hourly"), "reset"),
        (lambda g: g["boards"][1].update(aggregate="max"), "aggregate"),
        (lambda g: g["boards"][1].update(id="Weekly Board"), "board id"),
        (lambda g: g["boards"][1].update(readable_days=0), "readable_days"),
        (lambda g: g["boards"][1].pop("readable_days"), "readable_days"),
        (lambda g: g["boards"].pop(0), "'global' that never resets is required"),
        (lambda g: g["boards"][0].update(reset="daily", readable_days=1), "'global' that never resets is required"),
        (lambda g: g.pop("action_types"), "not a valid game definition"),
        (lambda g: g["action_types"].pop("match"), "default action type"),
    ],
)
def test_a_broken_game_definition_is_refused_with_what_is_wrong(change: object, complaint: str) -> None:
    game = json.loads(json.dumps(GAME))
    change(game)  # type: ignore[operator]

    with pytest.raises(ConfigurationError, match=complaint):
        parse(json.dumps(game))


def test_the_templates_game_defines_the_three_default_boards() -> None:
    template = Template(Path(__file__).resolve().parents[2] / "template.yaml")
    game = parse(template.document["Globals"]["Function"]["Environment"]["Variables"]["GAME"])

    assert {board_id: (b.aggregate, b.reset) for board_id, b in game.boards.items()} == {
        "global": ("sum", "none"),
        "weekly": ("sum", "weekly"),
        "daily-best": ("best", "daily"),
    }
