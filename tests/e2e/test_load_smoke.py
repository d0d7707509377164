"""A short run of the load test (`make load`'s locustfile) against the session's stack: players registering, logging
in, playing and reading while anonymous viewers watch the live feed, then every player's total checked on the board.

Against a deployed stack (API_URL) the boards may be busy with other players: a viewer that hears nothing is not a
failure there, and a match lasts the template's 20 s, so each player plays about one."""

from pathlib import Path

import pytest

from load.run import Load, Target, run_step
from local.services import Endpoints
from tests.e2e.conftest import LiveFeed

pytestmark = pytest.mark.e2e
SMOKE = Load(players=3, viewers=3, seconds=25, spawn_rate=3)
PLAYERS_ROUTES = {"/v1/users", "/v1/login", "/v1/actions", "/v1/scores"}


def test_under_a_short_load_every_accepted_score_counts_once_and_viewers_see_no_error(
    api_url: str, live: LiveFeed, local_stack: Endpoints | None, tmp_path: Path
) -> None:
    target = Target(api_url, live.realtime_url, live.http_host, local_stack)

    step = run_step(target, SMOKE, tmp_path)

    failed = {route["name"]: route["failures"] for route in step["routes"] if route["failures"]}
    assert (failed, step["exceptions"], step["locust_exit_code"]) == ({}, [], 0)
    assert {route["name"] for route in step["routes"] if route["requests"]} >= PLAYERS_ROUTES
    totals = step["totals"]
    assert totals["players"] == SMOKE.players
    assert totals["accepted_scores"] > 0
    assert totals["exact"], totals
    feed = step["live_feed"]
    assert (feed["viewers"], feed["errors"]) == (SMOKE.viewers, [])
    if local_stack is not None:  # every board the players score on changes: each viewer hears it
        assert feed["silent_viewers"] == 0, feed
    assert step["ok"]
