"""Actions, scores and the board over HTTP, against the local runtime or a deployed stack (API_URL).

On a shared deployed board other players may be present: the tests check their own players only."""

import random
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests

from clients.play import wait_until_scorable

pytestmark = pytest.mark.e2e
PASSWORD = "correct horse battery"


class Player:
    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.http = requests.Session()
        self.username = f"e2e_{uuid.uuid4().hex[:12]}"
        registered = self.http.post(
            f"{self.base_url}/v1/users", json={"username": self.username, "password": PASSWORD}, timeout=30
        )
        assert registered.status_code == 201, registered.text
        self.user_id = registered.json()["user_id"]
        self.display_name = str(registered.json()["display_name"])  # generated: the boards never show the username
        tokens = self.http.post(
            f"{self.base_url}/v1/login", json={"username": self.username, "password": PASSWORD}, timeout=30
        ).json()
        self.access_token = str(tokens["access_token"])
        self.http.headers["Authorization"] = f"Bearer {self.access_token}"

    def start(self) -> str:
        """Start a match and play it for its minimum duration: its action id."""
        response = self.http.post(f"{self.base_url}/v1/actions", json={"type": "match"}, timeout=30)
        assert response.status_code == 201, response.text
        wait_until_scorable(response.json())
        return str(response.json()["action_id"])

    def post(self, score: Any, action_id: str, key: str | None = None, **extra: Any) -> requests.Response:
        headers = {"Idempotency-Key": key} if key else {}
        body = {"user_id": self.user_id, "score": score, "action_id": action_id, **extra}
        return self.http.post(f"{self.base_url}/v1/scores", json=body, headers=headers, timeout=30)

    def play(self, score: int) -> None:
        response = self.post(score, self.start())
        assert response.status_code == 202, response.text


def standing(base_url: str, user_id: str) -> requests.Response:
    return requests.get(f"{base_url.rstrip('/')}/v1/scores/{user_id}", timeout=30)


def wait_for_total(base_url: str, user_id: str, total: int, seconds: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    while True:
        response = standing(base_url, user_id)
        if response.status_code == 200 and response.json()["score"] == total:
            return dict(response.json())
        assert time.monotonic() < deadline, f"total {total} not reached: {response.status_code} {response.text}"
        time.sleep(0.2)


def test_concurrent_players_totals_come_out_exact(api_url: str) -> None:
    players = [Player(api_url) for _ in range(6)]
    plays = {player.user_id: [random.randint(1, 1000) for _ in range(5)] for player in players}

    def play_all(player: Player) -> None:
        for score in plays[player.user_id]:
            player.play(score)

    with ThreadPoolExecutor(len(players)) as pool:
        list(pool.map(play_all, players))

    for player in players:
        mine = wait_for_total(api_url, player.user_id, sum(plays[player.user_id]))
        assert mine["user_name"] == player.display_name != player.username
        assert any(entry["user_id"] == player.user_id for entry in mine["around"])
    top = requests.get(f"{api_url.rstrip('/')}/v1/scores", timeout=30).json()
    assert 1 <= len(top) <= 10
    assert [entry["rank"] for entry in top] == list(range(1, len(top) + 1))
    assert [entry["score"] for entry in top] == sorted((entry["score"] for entry in top), reverse=True)


def test_a_retried_post_with_an_idempotency_key_counts_once(api_url: str) -> None:
    player = Player(api_url)
    action_id = player.start()

    first = player.post(300, action_id, key="retry-1")
    again = player.post(300, action_id, key="retry-1")
    other = player.post(301, action_id, key="retry-1")

    assert (first.status_code, again.status_code, other.status_code) == (202, 202, 422)
    assert first.json() == again.json()
    player.play(1)
    wait_for_total(api_url, player.user_id, 301)


def test_the_contract_over_http(api_url: str) -> None:
    alice, bob = Player(api_url), Player(api_url)
    action_id = alice.start()

    assert requests.post(f"{api_url.rstrip('/')}/v1/scores", json={}, timeout=30).status_code == 401
    assert alice.post(1.5, action_id).status_code == 400
    assert alice.post(10, action_id, bonus=1).status_code == 400
    assert alice.post(10, action_id, user_id=bob.user_id).status_code == 403
    assert alice.post(10, "no-such-action").status_code == 404
    assert alice.post(1001, action_id).status_code == 422
    assert alice.post(0, action_id).status_code == 422
    assert alice.post(-5, action_id).status_code == 422
    assert alice.post(1000, action_id).status_code == 202
    assert alice.post(1000, action_id).status_code == 409
    assert standing(api_url, uuid.uuid4().hex).status_code == 404
    for response in (alice.post("10", action_id), standing(api_url, uuid.uuid4().hex)):
        assert response.headers["Content-Type"].startswith("application/problem+json")
