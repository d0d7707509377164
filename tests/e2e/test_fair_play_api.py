"""Fair play over HTTP: each rule of the game the stack runs, at the value it is configured with (locally
local/game.json; against API_URL, E2E_GAME_FILE or template.yaml's GAME); scores from the studio's servers and
moderation on IAM-signed routes. Every refusal is checked to change nothing a client can see."""

import time
from typing import Any

import pytest
import requests

from clients.play import wait_until_scorable
from clients.signed_api import ExecuteApiAuth
from leaderboard.game import ActionType
from local.services import Endpoints
from tests.e2e.hostile import game_under_test
from tests.e2e.test_scores_api import Player, standing, wait_for_total

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def limited(local_stack: Endpoints | None) -> ActionType:
    """The game's action type with every fair-play limit (the one the rules are proven on)."""
    kinds = [
        kind
        for kind in game_under_test(local_stack).action_types.values()
        if kind.min_duration_seconds and kind.max_scores_per_hour and kind.max_points_per_hour
    ]
    assert kinds, "the game under test has no action type with every fair-play limit"
    return min(kinds, key=lambda kind: kind.min_duration_seconds)


class Limited(Player):
    def __init__(self, base_url: str, kind: ActionType) -> None:
        super().__init__(base_url)
        self.kind = kind

    def begin(self) -> requests.Response:
        return self.http.post(f"{self.base_url}/v1/actions", json={"type": self.kind.name}, timeout=30)

    def play_limited(self, score: int) -> requests.Response:
        started = self.begin()
        assert started.status_code == 201, started.text
        wait_until_scorable(started.json())
        return self.post(score, started.json()["action_id"])


def within_one_hour(kind: ActionType, plays: int) -> None:
    """The hourly limits count per clock hour: wait for the next hour if these plays might straddle two."""
    needed = plays * (kind.min_duration_seconds + 1) + 30
    left = 3600 - time.time() % 3600
    if left < needed:
        time.sleep(left + 1)


def test_an_action_scored_before_its_minimum_duration_is_422_and_counts_for_nothing(
    api_url: str, limited: ActionType
) -> None:
    player = Limited(api_url, limited)
    started = player.begin()
    assert started.status_code == 201, started.text

    early = player.post(1, started.json()["action_id"])

    assert early.status_code == 422, early.text
    assert f"at least {limited.min_duration_seconds} s" in early.json()["detail"]
    assert standing(api_url, player.user_id).status_code == 404
    wait_until_scorable(started.json())
    assert player.post(1, started.json()["action_id"]).status_code == 202
    wait_for_total(api_url, player.user_id, 1)


def test_open_actions_are_capped_with_429_and_retry_after(api_url: str, limited: ActionType) -> None:
    player = Limited(api_url, limited)
    for _ in range(limited.max_open):
        assert player.begin().status_code == 201

    refused = player.begin()

    assert refused.status_code == 429, refused.text
    assert 0 < int(refused.headers["Retry-After"]) <= limited.lifetime_seconds
    assert refused.headers["Content-Type"].startswith("application/problem+json")


def test_scores_per_hour_are_capped(api_url: str, limited: ActionType) -> None:
    cap = limited.max_scores_per_hour
    assert cap is not None
    within_one_hour(limited, cap + 1)
    player = Limited(api_url, limited)
    for _ in range(cap):
        assert player.play_limited(1).status_code == 202

    refused = player.play_limited(1)

    assert refused.status_code == 429, refused.text
    assert 0 < int(refused.headers["Retry-After"]) <= 3600
    wait_for_total(api_url, player.user_id, cap)  # the refused point is nowhere


def test_points_per_hour_are_capped(api_url: str, limited: ActionType) -> None:
    cap, top = limited.max_points_per_hour, limited.max_score
    assert cap is not None
    plays = [top] * (cap // top) + ([cap % top] if cap % top else [])
    within_one_hour(limited, len(plays) + 1)
    player = Limited(api_url, limited)
    for score in plays:
        assert player.play_limited(score).status_code == 202

    refused = player.play_limited(1)

    assert refused.status_code == 429, refused.text
    assert f"limit of {cap} points" in refused.json()["detail"]
    wait_for_total(api_url, player.user_id, cap)


def server_score(api_url: str, auth: ExecuteApiAuth, user_id: str, action_id: str, score: int) -> requests.Response:
    body = {"user_id": user_id, "action_id": action_id, "score": score, "type": "match"}
    return requests.post(f"{api_url}/v1/server/scores", json=body, auth=auth, timeout=30)


def test_a_game_server_posts_a_players_score_once(api_url: str, iam_auth: ExecuteApiAuth) -> None:
    player = Player(api_url)
    match = f"match-{player.user_id[:8]}"

    first = server_score(api_url, iam_auth, player.user_id, match, 420)
    again = server_score(api_url, iam_auth, player.user_id, match, 420)

    assert (first.status_code, again.status_code) == (202, 202), (first.text, again.text)
    assert first.json() == {"action_id": match, "user_id": player.user_id, "score": 420, "status": "accepted"}
    shown = wait_for_total(api_url, player.user_id, 420)
    assert shown["user_name"] != player.username  # the name registration gave, never the login name
    assert server_score(api_url, iam_auth, player.user_id, match, 421).status_code == 409
    assert server_score(api_url, iam_auth, "no-such-player", match, 1).status_code == 404


def moderate(api_url: str, auth: ExecuteApiAuth, route: str, **body: Any) -> requests.Response:
    return requests.post(f"{api_url}/v1/moderation/{route}", json=body, auth=auth, timeout=30)


def test_a_banned_player_is_hidden_and_refused_until_unbanned(api_url: str, iam_auth: ExecuteApiAuth) -> None:
    player = Player(api_url)
    player.play(300)
    wait_for_total(api_url, player.user_id, 300)

    banned = moderate(api_url, iam_auth, "bans", user_id=player.user_id, reason="e2e: a bot")

    assert banned.status_code == 200, banned.text
    assert banned.json()["action"] == "ban"
    assert standing(api_url, player.user_id).status_code == 404
    top = requests.get(f"{api_url}/v1/scores", timeout=30).json()
    assert player.user_id not in {entry["user_id"] for entry in top}
    assert player.http.post(f"{api_url}/v1/actions", json={"type": "match"}, timeout=30).status_code == 403

    unbanned = moderate(api_url, iam_auth, "unbans", user_id=player.user_id, reason="e2e: appeal upheld")

    assert unbanned.status_code == 200, unbanned.text
    wait_for_total(api_url, player.user_id, 300)


def test_an_operator_removes_a_players_points_from_one_season(api_url: str, iam_auth: ExecuteApiAuth) -> None:
    player = Player(api_url)
    player.play(250)
    wait_for_total(api_url, player.user_id, 250)
    boards = {board["id"]: board for board in requests.get(f"{api_url}/v1/boards", timeout=30).json()}
    weekly = boards["weekly"]["season"]

    removed = moderate(
        api_url, iam_auth, "removals", user_id=player.user_id, board="weekly", season=weekly, reason="e2e"
    )

    assert removed.status_code == 200, removed.text
    assert removed.json()["points"] == 250
    deadline = time.monotonic() + 10
    while requests.get(f"{api_url}/v1/boards/weekly/scores/{player.user_id}", timeout=30).status_code != 404:
        assert time.monotonic() < deadline, "the weekly board still shows the removed points"
        time.sleep(0.2)
    assert standing(api_url, player.user_id).json()["score"] == 250  # all time keeps them
