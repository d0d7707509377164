"""A short run of the load test (`make load`'s locustfile): players registering, logging in, playing and reading
while anonymous viewers watch the live feed, then every player's standing checked on every board their matches feed
(global, weekly and daily-best in both games), in every season they scored in.

Locally it runs on a fresh runtime of its own: on the session's, the other tests' players already hold every top 10
with scores these players may never reach, so a viewer could rightly hear nothing; on a fresh one every board they
score on changes, and each viewer must hear it. Against a deployed stack (API_URL) it runs on that stack, where a
silent viewer is no failure, and a match lasts the template's 20 s, so each player plays about one."""

import os
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from load.ledger import ACTION_TYPE
from load.run import Load, Target, run_step
from local.services import Endpoints, read_running_stack
from tests.e2e.conftest import PARAMETERS, STATE_DIR, LiveFeed, local_runtime
from tests.e2e.hostile import game_under_test

pytestmark = pytest.mark.e2e
SMOKE = Load(players=3, viewers=3, seconds=25, spawn_rate=3)
PLAYERS_ROUTES = {"/v1/users", "/v1/login", "/v1/actions", "/v1/scores"}


@pytest.fixture
def target(api_url: str, live: LiveFeed, local_stack: Endpoints | None) -> Iterator[Target]:
    if local_stack is None:
        yield Target(api_url, live.realtime_url, live.http_host, game_under_test(None))
        return
    state_dir = STATE_DIR.parent / f"{STATE_DIR.name}-load"
    with local_runtime(state_dir, dict(os.environ), PARAMETERS):
        fresh = read_running_stack(state_dir / "stack.json")
        assert fresh is not None
        yield Target(fresh.api_url, fresh.live_url, urlsplit(fresh.live_http_url).netloc, game_under_test(fresh), fresh)


def test_under_a_short_load_every_accepted_score_counts_once_and_viewers_see_no_error(
    target: Target, tmp_path: Path
) -> None:
    game, local_stack = target.game, target.local_stack
    step = run_step(target, SMOKE, tmp_path)

    failed = {route["name"]: route["failures"] for route in step["routes"] if route["failures"]}
    assert (failed, step["exceptions"], step["locust_exit_code"]) == ({}, [], 0)
    assert {route["name"] for route in step["routes"] if route["requests"]} >= PLAYERS_ROUTES
    totals = step["totals"]
    assert totals["players"] == SMOKE.players
    assert totals["accepted_scores"] > 0
    assert totals["exact"], totals
    # Every board a match feeds was read for every player, and held points, unless a reset made its seasons unknown
    fed = {board.id for board in game.boards_fed_by(ACTION_TYPE, by_server=False)}
    assert set(totals["boards"]) == fed >= {"global"}
    for board, checked in totals["boards"].items():
        assert checked["skipped"] or checked["with_points"] > 0, (board, checked)
        assert checked["skipped"] or checked["standings_checked"] >= SMOKE.players, (board, checked)
    assert not totals["boards"]["global"]["skipped"]  # it never resets
    feed = step["live_feed"]
    assert (feed["viewers"], feed["errors"]) == (SMOKE.viewers, [])
    if local_stack is not None:  # every board the players score on changes: each viewer hears it
        assert feed["silent_viewers"] == 0, feed
    assert step["ok"]
