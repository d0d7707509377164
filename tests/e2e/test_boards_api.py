"""Boards and seasons over HTTP, against the local runtime or a deployed stack (API_URL): the boards and their
seasons, pages of standings, a player's standing per board, and the 400s and 404s of bad queries."""

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

from tests.e2e.test_scores_api import Player, wait_for_total

pytestmark = pytest.mark.e2e


def get(api_url: str, path: str, **params: Any) -> requests.Response:
    return requests.get(f"{api_url}{path}", params=params, timeout=30)


def current_week(now: datetime) -> tuple[str, str, str]:
    """The ISO week holding `now`: its name, its start and its end (the next Monday, 00:00 UTC)."""
    monday = (now - timedelta(days=now.weekday())).replace(hour=0, minute=0, second=0, microsecond=0)
    year, week, _ = now.isocalendar()
    return f"{year}-W{week:02d}", f"{monday:%Y-%m-%dT%H:%M:%SZ}", f"{monday + timedelta(days=7):%Y-%m-%dT%H:%M:%SZ}"


def wait_for_score(api_url: str, board: str, user_id: str, score: int, seconds: float = 30) -> requests.Response:
    """The player's standing on the board once it shows `score` (the consumer writes the boards one after another)."""
    deadline = time.monotonic() + seconds
    while True:
        response = get(api_url, f"/v1/boards/{board}/scores/{user_id}")
        if response.status_code == 200 and response.json()["score"] == score:
            return response
        assert time.monotonic() < deadline, f"{board}: {score} not reached: {response.status_code} {response.text}"
        time.sleep(0.2)


def test_the_boards_are_listed_with_their_current_season_and_next_reset(api_url: str) -> None:
    before = datetime.now(UTC)
    response = get(api_url, "/v1/boards")
    now = datetime.now(UTC)
    if before.date() != now.date():
        pytest.skip("a day ended during the request")

    assert response.status_code == 200
    boards = {board["id"]: board for board in response.json()}
    assert set(boards) >= {"global", "weekly", "daily-best"}
    assert (boards["global"]["season"], boards["global"]["starts_at"], boards["global"]["ends_at"]) == (
        "all",
        None,
        None,
    )
    week, starts_at, ends_at = current_week(now)
    assert (boards["weekly"]["season"], boards["weekly"]["starts_at"], boards["weekly"]["ends_at"]) == (
        week,
        starts_at,
        ends_at,
    )
    today = boards["daily-best"]
    assert (today["season"], today["ends_at"]) == (f"{now:%Y-%m-%d}", f"{now + timedelta(days=1):%Y-%m-%d}T00:00:00Z")
    assert (today["aggregate"], today["reset"]) == ("best", "daily")


def test_a_score_counts_on_every_board_its_action_feeds(api_url: str) -> None:
    player = Player(api_url)
    player.play(300)
    player.play(200)

    weekly = wait_for_score(api_url, "weekly", player.user_id, 500)
    best = wait_for_score(api_url, "daily-best", player.user_id, 300)
    overall = wait_for_score(api_url, "global", player.user_id, 500)

    assert weekly.status_code == best.status_code == overall.status_code == 200
    assert weekly.json()["season"] == current_week(datetime.now(UTC))[0]
    assert overall.json()["season"] == "all"
    me = {key: overall.json()[key] for key in ("user_id", "user_name", "rank", "score")}
    assert me in overall.json()["around"]


def test_a_page_of_standings_is_in_rank_order_and_bounded(api_url: str) -> None:
    players = [Player(api_url) for _ in range(3)]
    for points, player in zip((30, 20, 10), players, strict=True):
        player.play(points)
    for points, player in zip((30, 20, 10), players, strict=True):
        wait_for_total(api_url, player.user_id, points)

    first = get(api_url, "/v1/boards/global/scores", limit=2).json()
    everyone = get(api_url, "/v1/boards/global/scores", limit=100).json()
    second = get(api_url, "/v1/boards/global/scores", offset=1, limit=2).json()

    assert (first["board"], first["season"], first["offset"], first["limit"]) == ("global", "all", 0, 2)
    assert [entry["rank"] for entry in first["items"]] == [1, 2]
    assert second["items"][0] == first["items"][1]
    assert [entry["rank"] for entry in everyone["items"]] == list(range(1, len(everyone["items"]) + 1))
    scores = [entry["score"] for entry in everyone["items"]]
    assert scores == sorted(scores, reverse=True)
    default = get(api_url, "/v1/boards/global/scores").json()
    assert default["limit"] == 10
    assert default["items"] == requests.get(f"{api_url}/v1/scores", timeout=30).json()  # the same board


def test_an_ended_season_still_readable_answers_and_a_season_long_gone_is_404(api_url: str) -> None:
    name = current_week(datetime.now(UTC) - timedelta(days=7))[0]
    last_week = get(api_url, "/v1/boards/weekly/scores", season=name)
    long_gone = get(api_url, "/v1/boards/weekly/scores", season="2020-W01")

    assert (last_week.status_code, last_week.json()["season"]) == (200, name)
    assert long_gone.status_code == 404


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/v1/boards/no-such-board/scores", {}),
        ("/v1/boards/no-such-board/scores/someone", {}),
        ("/v1/boards/weekly/scores", {"season": "2999-W01"}),  # not started
        ("/v1/boards/weekly/scores", {"season": "2026-12"}),  # a month: not one of a weekly board's seasons
        ("/v1/boards/global/scores", {"season": "2026-W49"}),
        ("/v1/boards/daily-best/scores/nobody-at-all", {}),
    ],
)
def test_unknown_boards_seasons_and_players_are_404(api_url: str, path: str, params: dict[str, str]) -> None:
    response = get(api_url, path, **params)

    assert response.status_code == 404
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.json()["status"] == 404


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/v1/boards/global/scores", {"limit": "0"}),
        ("/v1/boards/global/scores", {"limit": "101"}),
        ("/v1/boards/global/scores", {"limit": "ten"}),
        ("/v1/boards/global/scores", {"offset": "-1"}),
        ("/v1/boards/global/scores", {"offset": "1.5"}),
        ("/v1/boards/global/scores", {"season": "last-week"}),
        ("/v1/boards/global/scores", {"sort": "asc"}),
        ("/v1/boards/global/scores/someone", {"limit": "5"}),
        ("/v1/boards/weekly/scores/someone", {"season": "2026-W54"}),
        ("/v1/boards/weekly/scores", {"season": "9999-12-31"}),  # names a day no calendar can end
        ("/v1/boards/no-such-board/scores", {"season": "last-week"}),  # query values first, then the board
        ("/v1/boards", {"page": "2"}),
    ],
)
def test_a_bad_query_value_is_400_and_says_which(api_url: str, path: str, params: dict[str, str]) -> None:
    response = get(api_url, path, **params)

    assert response.status_code == 400
    assert response.headers["Content-Type"] == "application/problem+json"
    assert next(iter(params)) in response.json()["detail"]
