"""Fair play: each rule of an action type proven at the value it is configured with, in the game the local runtime
runs (local/game.json) and in the game template.yaml deploys; every refusal changes nothing."""

import math
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest

from bench import template_game
from leaderboard import aws
from leaderboard.game import ActionType, parse
from leaderboard.identity import Identity
from local.template import LOCAL_GAME_FILE
from tests.conftest import load_event
from tests.integration.conftest import Game, monday_after_next
from tests.integration.test_auth import Watched, watched

__all__ = ["watched"]  # the fixture, shared with test_auth

HOUR = 3600
# Every test starts at the top of an hour: 10:00 UTC on the Monday after next, ahead of the real clock by which
# Redis expires the seasons the scores reach (a fixed date would have them gone as soon as written once past).
TOP_OF_AN_HOUR = (monday_after_next() + timedelta(hours=10)).timestamp()

GAMES = {"local": LOCAL_GAME_FILE.read_text(), "template": template_game()}


@dataclass
class Clock:
    now: float = TOP_OF_AN_HOUR

    def __call__(self) -> float:
        return self.now


@dataclass
class Rules:
    """The game under test, an action type of it with limits, and a moving clock."""

    game: Game
    kind: ActionType
    clock: Clock

    def start(self, player: Identity) -> tuple[int, dict[str, Any]]:
        return self.game.start(player, {"type": self.kind.name})

    def action(self, player: Identity) -> str:
        status, body = self.start(player)
        assert status == 201, body
        return str(body["action_id"])

    def post(self, player: Identity, action_id: str, score: int) -> tuple[int, dict[str, Any]]:
        return self.game.post(player, {"user_id": player.user_id, "score": score, "action_id": action_id})

    def play(self, player: Identity, score: int) -> tuple[int, dict[str, Any]]:
        """Start an action, play it for its minimum duration, score it."""
        action_id = self.action(player)
        self.clock.now += self.kind.min_duration_seconds
        return self.post(player, action_id, score)

    def state(self, player: Identity) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The player's item and the records of scored actions: what a refusal must not change."""
        players = [
            item for item in self.game.stack.items("PlayerTotalsTable") if item["user_id"]["S"] == player.user_id
        ]
        return players, self.game.stack.items("ActionsTable")


@pytest.fixture(params=[("local", "sprint"), ("template", "match")], ids=lambda param: f"{param[0]}-{param[1]}")
def rules(request: pytest.FixtureRequest, game: Game, monkeypatch: pytest.MonkeyPatch) -> Rules:
    document, action_type = GAMES[request.param[0]], request.param[1]
    monkeypatch.setenv("GAME", document)
    clock = Clock()
    monkeypatch.setattr(time, "time", clock)
    return Rules(game, parse(document).action_types[action_type], clock)


def test_the_games_under_test_have_every_limit(rules: Rules) -> None:
    kind = rules.kind
    assert kind.min_duration_seconds > 0
    assert kind.max_open < 10
    assert kind.max_scores_per_hour is not None
    assert kind.max_points_per_hour is not None


def test_an_action_is_scored_no_sooner_than_its_minimum_duration(rules: Rules) -> None:
    alice = rules.game.player("alice")
    status, body = rules.start(alice)
    started = rules.clock.now
    rules.clock.now = started + rules.kind.min_duration_seconds - 0.001
    before = rules.state(alice)

    status, problem = rules.post(alice, body["action_id"], 1)

    assert status == 422, problem
    assert f"at least {rules.kind.min_duration_seconds} s" in problem["detail"]
    assert rules.state(alice) == before
    rules.clock.now = started + rules.kind.min_duration_seconds
    assert rules.post(alice, body["action_id"], 1)[0] == 202


def test_an_action_is_scored_no_later_than_its_lifetime(rules: Rules) -> None:
    alice = rules.game.player("alice")
    action_id = rules.action(alice)
    rules.clock.now += rules.kind.lifetime_seconds - 0.001
    assert rules.post(alice, action_id, 1)[0] == 202

    late = rules.action(alice)
    rules.clock.now += rules.kind.lifetime_seconds
    before = rules.state(alice)
    assert rules.post(alice, late, 1)[0] == 409
    assert rules.state(alice) == before


def test_open_actions_are_capped_until_one_is_scored_or_expires(rules: Rules) -> None:
    alice, bob = rules.game.player("alice"), rules.game.player("bob")
    opened = [rules.action(alice) for _ in range(rules.kind.max_open)]
    before = rules.state(alice)

    rules.clock.now += 1
    status, problem = rules.start(alice)

    assert status == 429, problem
    assert rules.state(alice) == before
    assert rules.game.last_headers["Retry-After"] == str(rules.kind.lifetime_seconds - 1)
    assert rules.start(bob)[0] == 201  # another player's cap is their own

    rules.clock.now += rules.kind.min_duration_seconds
    assert rules.post(alice, opened[0], 1)[0] == 202
    assert rules.start(alice)[0] == 201  # scoring one made room

    rules.clock.now = TOP_OF_AN_HOUR + rules.kind.lifetime_seconds  # the first ones expired
    assert rules.start(alice)[0] == 201
    [item], _ = rules.state(alice)
    assert len(item[f"open:{rules.kind.name}"]["SS"]) == 2  # the expired were dropped to make room


def test_scores_per_hour_are_capped(rules: Rules) -> None:
    cap = rules.kind.max_scores_per_hour
    assert cap is not None
    alice = rules.game.player("alice")
    for _ in range(cap):
        assert rules.play(alice, 1)[0] == 202
    refused = rules.action(alice)
    rules.clock.now += rules.kind.min_duration_seconds
    before = rules.state(alice)

    status, problem = rules.post(alice, refused, 1)

    assert status == 429, problem
    assert f"limit of {cap} scores" in problem["detail"]
    assert rules.game.last_headers["Retry-After"] == str(math.ceil(TOP_OF_AN_HOUR + HOUR - rules.clock.now))
    assert rules.state(alice) == before
    rules.clock.now = TOP_OF_AN_HOUR + HOUR  # the next hour
    assert rules.play(alice, 1)[0] == 202


def test_points_per_hour_are_capped(rules: Rules) -> None:
    cap, top = rules.kind.max_points_per_hour, rules.kind.max_score
    assert cap is not None
    assert rules.kind.max_scores_per_hour is not None
    assert cap // top < rules.kind.max_scores_per_hour  # so the points run out first
    alice = rules.game.player("alice")
    for _ in range(cap // top):
        assert rules.play(alice, top)[0] == 202
    room = cap - cap // top * top
    if room:
        assert rules.play(alice, room)[0] == 202  # exactly up to the cap
    refused = rules.action(alice)
    rules.clock.now += rules.kind.min_duration_seconds
    before = rules.state(alice)

    status, problem = rules.post(alice, refused, 1)

    assert status == 429, problem
    assert f"limit of {cap} points" in problem["detail"]
    assert rules.state(alice) == before
    [item], _ = before
    assert int(item["accepted_total"]["N"]) == cap


def test_a_request_that_died_before_its_write_recorded_nothing_and_counts_on_no_limit(
    rules: Rules, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice = rules.game.player("alice")
    action_id = rules.action(alice)
    rules.clock.now += rules.kind.min_duration_seconds
    before = rules.state(alice)

    def crash(**kwargs: Any) -> None:
        raise SystemExit("the function died after SendMessage, before its write")

    with monkeypatch.context() as patch:
        patch.setattr(aws.dynamodb(), "update_item", crash)
        with pytest.raises(SystemExit):
            rules.post(alice, action_id, 1)

    assert rules.state(alice) == before
    assert rules.post(alice, action_id, 1)[0] == 202, "still open: the retry scores it"
    rules.game.drain()
    assert rules.game.total(alice) == 1
    assert rules.post(alice, action_id, 1)[0] == 409  # scored once


def test_farming_refusals_are_security_events_with_the_player_and_address(rules: Rules, watched: Watched) -> None:
    alice = rules.game.player("alice")
    opened = [rules.action(alice) for _ in range(rules.kind.max_open)]
    address = load_event("start_action_ok")["requestContext"]["http"]["sourceIp"]
    watched.clear()

    assert rules.start(alice)[0] == 429  # too many open
    assert rules.post(alice, opened[0], 1)[0] == 422  # too early

    assert watched.events() == [("FarmingRefused", alice.user_id, address)] * 2
    assert watched.counted() == ["FarmingRefused"] * 2
