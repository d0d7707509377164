"""The fair-play rules' arithmetic: action ids, when an action can be scored, the hourly windows, the game's limits."""

import json

import pytest

from leaderboard import scores
from leaderboard.actions import Action
from leaderboard.config import ConfigurationError
from leaderboard.game import ActionType, parse
from leaderboard.problems import Conflict, UnprocessableContent

SPRINT = {
    "max_score": 100,
    "lifetime_seconds": 60,
    "min_duration_seconds": 20,
    "max_open": 2,
    "max_scores_per_hour": 5,
    "max_points_per_hour": 250,
}
GAME = {
    "action_types": {"match": {"max_score": 1000, "lifetime_seconds": 3600}, "sprint": SPRINT},
    "boards": [
        {"id": "global", "title": "All", "action_types": ["match", "sprint"], "aggregate": "sum", "reset": "none"},
        {
            "id": "tournament",
            "title": "Tournament",
            "action_types": ["match"],
            "aggregate": "sum",
            "reset": "none",
            "server_scores_only": True,
        },
    ],
}
# 2026-12-01T10:00:00Z
MOMENT_MS = 1_796_119_200_000


@pytest.fixture(autouse=True)
def game(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GAME", json.dumps(GAME))


def sprint(started_at_ms: int = MOMENT_MS) -> Action:
    return Action.new(parse(json.dumps(GAME)).action_types["sprint"], started_at_ms, "alice")


def test_an_action_id_carries_its_type_and_start() -> None:
    action = sprint()
    assert action.action_id.startswith("sprint.")
    assert Action.parse(action.action_id) == action
    assert len(action.action_id) <= 64  # what POST /v1/scores accepts


@pytest.mark.parametrize(
    "action_id",
    [
        "",
        "sprint",
        "unknown.19acf0a1f80.0123456789abcdef0123",  # a type the game does not define
        "sprint.19acf0a1f80.0123456789abcdef012",  # too short
        "sprint.19acf0a1f80.0123456789abcdef0123\n",
        "Sprint.19acf0a1f80.0123456789abcdef0123",
        "sprint.19ACF0A1F80.0123456789abcdef0123",
        "sprint.1234567890abc.0123456789abcdef0123",  # a start past any clock
        "server/u1/match-7",
    ],
)
def test_anything_else_names_no_action(action_id: str) -> None:
    assert Action.parse(action_id) is None


def test_the_body_rounds_toward_safety() -> None:
    action = sprint(MOMENT_MS + 400)  # 10:00:00.400
    body = action.body()
    assert body["scorable_at"] == "2026-12-01T10:00:21Z"  # 20.4 s later, rounded up: never too early
    assert body["expires_at"] == "2026-12-01T10:01:00Z"  # 60.4 s later, rounded down: never too late
    assert (body["type"], body["max_score"]) == ("sprint", 100)


def test_an_action_is_scorable_from_its_minimum_duration_until_it_expires() -> None:
    action = sprint()
    too_early = scores._refusal(action, 50, MOMENT_MS + 19_999)
    assert isinstance(too_early, UnprocessableContent)
    assert "at least 20 s" in too_early.detail
    assert scores._refusal(action, 50, MOMENT_MS + 20_000) is None
    assert scores._refusal(action, 50, MOMENT_MS + 59_999) is None
    assert isinstance(scores._refusal(action, 50, MOMENT_MS + 60_000), Conflict)
    # Expired comes before a score out of range (409 before 422), which comes before too early.
    assert isinstance(scores._refusal(action, 101, MOMENT_MS + 60_000), Conflict)
    out_of_range = scores._refusal(action, 101, MOMENT_MS)
    assert isinstance(out_of_range, UnprocessableContent)
    assert "from 1 to 100" in out_of_range.detail


def test_hourly_limits_count_per_type_and_clock_hour() -> None:
    kind = parse(json.dumps(GAME)).action_types["sprint"]
    hour = MOMENT_MS // 3_600_000
    limits = scores.hourly_limits(kind, 40, MOMENT_MS + 3_599_999)
    assert [(limit.attribute, limit.cap, limit.amount) for limit in limits] == [
        (f"n:sprint:{hour}", 5, 1),
        (f"p:sprint:{hour}", 250, 40),
    ]
    assert scores.hourly_limits(kind, 40, MOMENT_MS + 3_600_000)[0].attribute == f"n:sprint:{hour + 1}"
    assert scores.hourly_limits(parse(json.dumps(GAME)).action_types["match"], 40, MOMENT_MS) == []


def test_the_consumer_drops_counters_of_hours_before_the_last() -> None:
    hour = MOMENT_MS // 3_600_000
    item = {f"n:sprint:{h}": {"N": "1"} for h in (hour - 5, hour - 2, hour - 1, hour)} | {"seasons": {"M": {}}}
    assert sorted(scores._past_counters(item, MOMENT_MS)) == [f"n:sprint:{hour - 5}", f"n:sprint:{hour - 2}"]


def test_server_scores_only_boards_take_no_players_scores() -> None:
    game = parse(json.dumps(GAME))
    assert [board.id for board in game.boards_fed_by("match", by_server=False)] == ["global"]
    assert [board.id for board in game.boards_fed_by("match", by_server=True)] == ["global", "tournament"]


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        ({"min_duration_seconds": 60}, "min_duration_seconds < lifetime_seconds"),
        ({"min_duration_seconds": -1}, "min_duration_seconds < lifetime_seconds"),
        ({"max_open": 0}, "max_open is 1 to 20"),
        ({"max_open": 21}, "max_open is 1 to 20"),
        ({"max_scores_per_hour": 0}, "max_scores_per_hour is at least 1"),
        ({"max_points_per_hour": 99}, "max_points_per_hour is at least max_score"),
    ],
)
def test_the_game_refuses_limits_that_make_no_sense(change: dict[str, int], complaint: str) -> None:
    game = json.loads(json.dumps(GAME))
    game["action_types"]["sprint"] |= change
    with pytest.raises(ConfigurationError, match=complaint):
        parse(json.dumps(game))


def test_action_type_names_fit_in_an_action_id() -> None:
    game = json.loads(json.dumps(GAME))
    game["action_types"]["a-very-long-type-name"] = game["action_types"].pop("sprint")
    game["boards"][0]["action_types"] = ["match"]
    with pytest.raises(ConfigurationError, match="1 to 16"):
        parse(json.dumps(game))


def test_limits_default_to_open_actions_only() -> None:
    assert parse(json.dumps(GAME)).action_types["match"] == ActionType("match", 1000, 3600, 0, 10, None, None)
