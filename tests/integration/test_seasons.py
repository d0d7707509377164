"""Boards and seasons in-process: one score feeding every board of its type exactly once, the season a score counts
in, the rollover at 00:00 UTC with a clock the tests control (no waiting for midnight), the archive, expiry and
rebuilds per board and season; the new routes' handlers."""

import calendar
import json
import os
import time
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from itertools import count
from typing import Any
from unittest import mock

import pytest

from functions.scores import get_board_scores, get_board_standing, list_boards, rebuild_board, roll_over_seasons
from leaderboard import aws, board_sync, scores
from leaderboard.game import game as game_definitions
from leaderboard.seasons import rfc3339
from tests.conftest import FakeLambdaContext, load_event
from tests.integration.conftest import Game, monday_after_next

# The template's three boards and a monthly one, so every kind of reset is exercised.
FOUR_BOARDS = json.dumps(
    {
        "action_types": {
            "match": {"max_score": 1000, "lifetime_seconds": 3600},
            "quest": {"max_score": 50, "lifetime_seconds": 3600},
        },
        "boards": [
            {"id": "global", "title": "All time", "action_types": ["match"], "aggregate": "sum", "reset": "none"},
            {"id": "weekly", "title": "Week", "action_types": ["match"], "aggregate": "sum", "reset": "weekly",
             "readable_days": 28},
            {"id": "daily-best", "title": "Today", "action_types": ["match"], "aggregate": "best", "reset": "daily",
             "readable_days": 7},
            {"id": "monthly", "title": "Month", "action_types": ["match", "quest"], "aggregate": "sum",
             "reset": "monthly", "readable_days": 31},
        ],
    }
)  # fmt: skip


DAY_MS = 86_400_000


def epoch_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def last_ms_of(day: date) -> int:
    """The last millisecond of a day (UTC)."""
    return epoch_ms(datetime(day.year, day.month, day.day, tzinfo=UTC)) + DAY_MS - 1


# The last days of seasons, from a day on (the first one that ends on or after it).


def a_sunday(start: date) -> date:
    return start + timedelta(days=6 - start.weekday())


def new_years_eve(start: date) -> date:
    return date(start.year, 12, 31)


def the_sunday_ending_an_iso_week_53(start: date) -> date:
    """The last day of the ISO week that spans a new year in a year of 53 weeks (2026-12-28..2027-01-03 is 2026-W53)."""
    year = next(year for year in count(start.year) if date(year, 12, 28).isocalendar().week == 53)
    return date.fromisocalendar(year, 53, 7)


def a_leap_day(start: date) -> date:
    return next(date(year, 2, 29) for year in count(start.year) if calendar.isleap(year) and date(year, 2, 29) >= start)


class Clock:
    """time.time() for everything in the test (handlers, the board's versions), moved by the test (`now_ms`). It starts
    on a Thursday at noon (UTC) in the week after next by the real clock, never on a fixed date: Redis expires a
    season's keys by its own, real, clock (the season's end plus its readable days), so the seasons a test writes
    must lie ahead of it."""

    def __init__(self) -> None:
        self.start = monday_after_next() + timedelta(days=3, hours=12)
        self.start_ms = self.now_ms = epoch_ms(self.start)

    def __call__(self) -> float:
        return self.now_ms / 1000

    def season(self, board_id: str, moment_ms: int | None = None) -> str:
        """The name of the board's season holding `moment_ms` (by default the start), as the game names it."""
        return game_definitions().boards[board_id].season_at(self.start_ms if moment_ms is None else moment_ms).name

    @property
    def week_end_ms(self) -> int:
        """00:00 UTC on the Monday after the start: its week and its Sunday end, the weekly and daily boards reset."""
        return last_ms_of(a_sunday(self.start.date())) + 1

    @property
    def unreadable_ms(self) -> int:
        """When the last of the seasons holding the start stops being readable (its board's readable days over)."""
        definitions = game_definitions().boards.values()
        return max(d.expires_at_ms(d.season_at(self.start_ms)) or 0 for d in definitions)


@pytest.fixture
def clock(game: Game, monkeypatch: pytest.MonkeyPatch) -> Iterator[Clock]:
    clock = Clock()
    monkeypatch.setattr(time, "time", clock)
    with mock.patch.dict(os.environ, {"GAME": FOUR_BOARDS}):
        yield clock


def ledger(game: Game, user_id: str) -> dict[str, list[int]]:
    item = game.stack.dynamodb.get_item(
        TableName=game.stack.physical_id("PlayerTotalsTable"), Key={"user_id": {"S": user_id}}
    )["Item"]
    return {key: [int(n["N"]) for n in value["L"]] for key, value in item.get("seasons", {}).get("M", {}).items()}


def call(handler: Any, event_name: str, path: dict[str, str], query: dict[str, str] | None = None) -> tuple[int, Any]:
    event = load_event(event_name)
    event["pathParameters"] = path
    event["queryStringParameters"] = query
    response = handler.lambda_handler(event, FakeLambdaContext())
    return response["statusCode"], json.loads(response["body"])


def page(board_id: str, **query: str) -> tuple[int, Any]:
    return call(get_board_scores, "get_board_scores", {"board": board_id}, query or None)


def standing(board_id: str, user_id: str, **query: str) -> tuple[int, Any]:
    return call(get_board_standing, "get_board_standing", {"board": board_id, "user_id": user_id}, query or None)


def points(board_id: str, **query: str) -> dict[str, int]:
    status, body = page(board_id, limit="100", **query)
    assert status == 200, body
    return {entry["user_id"]: entry["score"] for entry in body["items"]}


def test_one_score_feeds_every_board_of_its_type_exactly_once_in_one_write(game: Game, clock: Clock) -> None:
    ann = game.player("ann")
    first, second = game.action(ann), game.action(ann)
    writes: list[str] = []
    real_update = aws.dynamodb().update_item

    def counted(**kwargs: Any) -> Any:
        writes.append(kwargs["TableName"])
        return real_update(**kwargs)

    with mock.patch.object(aws.dynamodb(), "update_item", counted):
        for action_id, score in ((first, 300), (second, 200)):
            assert game.post(ann, {"user_id": ann.user_id, "score": score, "action_id": action_id})[0] == 202
        messages = game.receive(visibility_timeout=0)
        game.deliver(messages)
        game.deliver(messages)  # redelivered: changes nothing
    game.drain()

    assert writes == [game.stack.physical_id("PlayerTotalsTable")] * 2  # one write per score on four boards
    assert ledger(game, ann.user_id) == {
        "global/all": [500, clock.now_ms],
        f"weekly/{clock.season('weekly')}": [500, clock.now_ms],
        f"daily-best/{clock.season('daily-best')}": [300, clock.now_ms],
        f"monthly/{clock.season('monthly')}": [500, clock.now_ms],
    }
    assert {board_id: points(board_id)[ann.user_id] for board_id in game_definitions().boards} == {
        "global": 500,
        "weekly": 500,
        "daily-best": 300,
        "monthly": 500,
    }


def test_an_action_type_feeds_only_its_boards(game: Game, clock: Clock) -> None:
    bob = game.player("bob")
    status, action = game.start(bob, {"type": "quest"})
    assert status == 201
    assert game.post(bob, {"user_id": bob.user_id, "score": 40, "action_id": action["action_id"]})[0] == 202
    game.drain()

    assert ledger(game, bob.user_id) == {f"monthly/{clock.season('monthly')}": [40, clock.now_ms]}
    assert standing("global", bob.user_id)[0] == 404


def test_the_best_board_keeps_the_highest_single_score_and_ties_go_to_who_reached_it_first(
    game: Game, clock: Clock
) -> None:
    ann, bob = game.player("ann"), game.player("bob")
    game.score(ann, 700)
    clock.now_ms += 1
    game.score(bob, 700)
    clock.now_ms += 1
    game.score(bob, 100)
    game.score(ann, 650)
    game.drain()

    body = page("daily-best")[1]
    assert [(entry["user_id"], entry["score"], entry["rank"]) for entry in body["items"]] == [
        (ann.user_id, 700, 1),
        (bob.user_id, 700, 2),
    ]


@pytest.mark.parametrize(
    ("last_day", "ended", "started"),
    [
        # A week's and a day's end (Sunday). By board: how the name of the season that ended, or started, ends.
        pytest.param(a_sunday, {"weekly": "", "daily-best": ""}, {"weekly": ""}, id="a-week-s-end"),
        # A year's end, and the ISO week that spans a new year.
        pytest.param(new_years_eve, {"monthly": "-12", "daily-best": "-12-31"}, {"monthly": "-01"}, id="a-year-s-end"),
        pytest.param(the_sunday_ending_an_iso_week_53, {"weekly": "-W53"}, {"weekly": "-W01"}, id="iso-week-53"),
        # The leap day.
        pytest.param(a_leap_day, {"daily-best": "-02-29", "monthly": "-02"}, {"monthly": "-03"}, id="a-leap-day"),
    ],
)
def test_a_score_accepted_just_before_a_reset_and_applied_after_counts_in_the_season_that_ended(
    game: Game,
    clock: Clock,
    last_day: Callable[[date], date],
    ended: dict[str, str],
    started: dict[str, str],
) -> None:
    ann = game.player("ann")
    last_ms = last_ms_of(last_day(clock.start.date()))
    clock.now_ms = last_ms
    game.score(ann, 10)  # the 202's moment: the last millisecond of the season
    clock.now_ms += 1 + 500  # the reset has passed when the consumer applies it

    game.drain()

    for board_id, tail in ended.items():
        season = clock.season(board_id, last_ms)
        assert season.endswith(tail), season
        assert season != clock.season(board_id, last_ms + 1), "the board resets then"
        assert points(board_id, season=season) == {ann.user_id: 10}, board_id
    for board_id, tail in started.items():
        season = clock.season(board_id, last_ms + 1)
        assert season.endswith(tail), season
        status, body = page(board_id)
        assert (status, body["season"], body["items"]) == (200, season, []), "the new season starts empty"
    assert points("global") == {ann.user_id: 10}


def test_the_boards_route_shows_the_new_season_from_the_reset_on(game: Game, clock: Clock) -> None:
    clock.now_ms = clock.week_end_ms - 1
    before = json.loads(list_boards.lambda_handler(load_event("list_boards"), FakeLambdaContext())["body"])
    clock.now_ms += 1
    after = json.loads(list_boards.lambda_handler(load_event("list_boards"), FakeLambdaContext())["body"])

    weekly_before, weekly_after = (next(b for b in boards if b["id"] == "weekly") for boards in (before, after))
    reset = rfc3339(clock.week_end_ms)
    this_week, next_week = clock.season("weekly"), clock.season("weekly", clock.week_end_ms)
    assert this_week != next_week
    assert (weekly_before["season"], weekly_before["ends_at"]) == (this_week, reset)
    assert (weekly_after["season"], weekly_after["starts_at"]) == (next_week, reset)


def test_a_seasons_keys_expire_when_its_readable_days_are_over_and_all_time_never(game: Game, clock: Clock) -> None:
    ann = game.player("ann")
    game.score(ann, 10)
    game.drain()
    client = game.redis
    weekly = game.board("weekly")
    weekly.watch(ann.user_id)  # the watcher registry, and a publishing cycle interrupted before it finished:
    assert weekly.rank_changes(client.get(weekly.keys["publishing"]).decode(), limit=10).changes  # notified_next
    prefix = os.environ["REDIS_KEY_PREFIX"]

    def expiries(tag: str) -> set[int]:
        keys = client.scan_iter(match=f"{prefix}:[{{]{tag}[}}]:*")
        return {client.pexpiretime(key) for key in keys if not key.endswith(b":publishing")}  # a lease: 10 s

    day_end_ms = last_ms_of(clock.start.date()) + 1
    assert expiries(f"weekly:{clock.season('weekly')}") == {clock.week_end_ms + 28 * DAY_MS}
    assert expiries(f"daily-best:{clock.season('daily-best')}") == {day_end_ms + 7 * DAY_MS}
    assert expiries("global:all") == {-1}  # no expiry


def test_an_ended_season_is_archived_and_read_from_the_archive_once_redis_let_it_go(game: Game, clock: Clock) -> None:
    ann, bob = game.player("ann"), game.player("bob")
    game.score(ann, 30)
    game.score(bob, 20)
    game.drain()
    clock.now_ms = clock.week_end_ms + 15 * 60_000  # the schedule runs after the reset

    first = roll_over_seasons.lambda_handler(load_event("roll_over_seasons"), FakeLambdaContext())
    again = roll_over_seasons.lambda_handler(load_event("roll_over_seasons"), FakeLambdaContext())

    week, day = clock.season("weekly"), clock.season("daily-best")
    assert sorted(first["archived"]) == [f"daily-best/{day}", f"weekly/{week}"]  # the seasons that had scores
    assert again["archived"] == []  # nothing changed since
    clock.now_ms = clock.unreadable_ms  # past the seasons' readable days: Redis has let them go
    status, body = page("weekly", season=week)
    assert (status, [(e["user_id"], e["rank"], e["score"]) for e in body["items"]]) == (
        200,
        [(ann.user_id, 1, 30), (bob.user_id, 2, 20)],
    )
    status, mine = standing("weekly", bob.user_id, season=week)
    assert (status, mine["rank"], mine["season"]) == (200, 2, week)
    assert page("daily-best", season=day)[0] == 200  # kept for good, like every archived season
    day_before = clock.season("daily-best", clock.start_ms - DAY_MS)
    assert page("daily-best", season=day_before)[0] == 404  # no score then: nothing was archived


def test_a_late_score_applied_after_the_archive_is_archived_again(game: Game, clock: Clock) -> None:
    ann, bob = game.player("ann"), game.player("bob")
    game.score(ann, 30)
    game.drain()
    clock.now_ms = clock.week_end_ms - 1
    game.score(bob, 50)  # accepted before the reset...
    clock.now_ms = clock.week_end_ms + 15 * 60_000
    roll_over_seasons.lambda_handler(load_event("roll_over_seasons"), FakeLambdaContext())
    game.drain()  # ...applied after the archive ran
    roll_over_seasons.lambda_handler(load_event("roll_over_seasons"), FakeLambdaContext())

    clock.now_ms = clock.unreadable_ms
    assert points("weekly", season=clock.season("weekly")) == {bob.user_id: 50, ann.user_id: 30}


def test_a_rebuild_of_one_season_restores_only_that_season(game: Game, clock: Clock) -> None:
    ann = game.player("ann")
    game.score(ann, 30)
    game.drain()
    client = game.redis
    client.delete(*client.scan_iter(match=f"{os.environ['REDIS_KEY_PREFIX']}:*"))  # Redis came back empty

    week = clock.season("weekly")
    result = rebuild_board.lambda_handler({"board": "weekly", "season": week}, FakeLambdaContext())

    assert result == {"players": {f"weekly/{week}": 1}}
    assert points("weekly") == {ann.user_id: 30}
    assert points("global") == {}
    rebuild_board.lambda_handler({}, FakeLambdaContext())
    assert points("global") == points("monthly") == {ann.user_id: 30}


def test_a_change_redriven_after_its_seasons_stopped_being_readable_reaches_the_other_boards(
    game: Game, clock: Clock
) -> None:
    ann = game.player("ann")
    game.score(ann, 30)
    clock.now_ms = clock.unreadable_ms + 4 * DAY_MS  # weeks later, out of the dead-letter queue

    game.drain()

    assert ledger(game, ann.user_id)["global/all"] == [30, clock.start_ms]
    assert points("global") == {ann.user_id: 30}
    assert points("weekly") == {}, "this week's board: the score was weeks before it"


def test_players_beyond_the_first_page_are_reached_with_offset(game: Game, clock: Clock) -> None:
    players = [game.player(f"p{index:02d}") for index in range(12)]
    for index, player in enumerate(players):
        game.score(player, 100 - index)
    game.drain()

    status, body = page("weekly", offset="10", limit="5")

    assert (status, body["offset"], body["limit"]) == (200, 10, 5)
    assert [(entry["user_id"], entry["rank"]) for entry in body["items"]] == [
        (players[10].user_id, 11),
        (players[11].user_id, 12),
    ]


class HeldWrites:
    """The accepting writes of some players (their actions still start), held back: their changes are in the queue,
    not yet in the ledger."""

    def __init__(self, held: set[str]) -> None:
        self.held, self.writes = held, []
        self._update = aws.dynamodb().update_item

    def __call__(self, **kwargs: Any) -> Any:
        if kwargs["Key"]["user_id"]["S"] in self.held and "rev = :next" in kwargs["UpdateExpression"]:
            self.writes.append(kwargs)
            return {}
        return self._update(**kwargs)

    def land(self) -> None:
        for write in self.writes:
            self._update(**write)
        self.writes.clear()


def test_a_change_that_arrives_before_its_write_is_applied_once_the_write_lands(game: Game, clock: Clock) -> None:
    ann = game.player("ann")
    game.score(ann, 10)
    game.drain()
    held = HeldWrites({ann.user_id})
    with mock.patch.object(aws.dynamodb(), "update_item", held):
        game.score(ann, 20)
    [message] = game.receive()
    pauses: list[float] = []

    def pause(seconds: float) -> None:  # the write lands while the consumer waits
        pauses.append(seconds)
        held.land()

    synced = board_sync.sync({"m1": scores.PlayerChanged.parse(message["Body"])}, clock.now_ms, pause)

    assert (synced.waiting, synced.unwritten, len(pauses)) == ([], [], 1)
    assert [(total.user_id, total.total) for total in synced.points["global", "all"]] == [(ann.user_id, 30)]


def test_a_player_whose_write_has_not_landed_waits_alone_and_the_rest_of_the_batch_is_applied(
    game: Game, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    ann, bob = game.player("ann"), game.player("bob")
    held = HeldWrites({ann.user_id})
    with mock.patch.object(aws.dynamodb(), "update_item", held):
        game.score(ann, 10)
        game.score(bob, 20)
    messages = game.receive(visibility_timeout=0)
    monkeypatch.setattr(board_sync, "_CATCH_UP_PAUSES", (0,))

    result = game.deliver(messages)

    ann_message = next(m["MessageId"] for m in messages if json.loads(m["Body"])["user_id"] == ann.user_id)
    assert result["batchItemFailures"] == [{"itemIdentifier": ann_message}]
    assert points("global") == {bob.user_id: 20}
    held.land()
    game.drain()  # delivered again
    assert points("global") == {bob.user_id: 20, ann.user_id: 10}


@pytest.mark.parametrize(("field", "value"), [("user_id", ""), ("rev", "1"), ("seasons", None)])
def test_a_message_with_a_broken_field_is_poison_and_fails_alone(
    game: Game, clock: Clock, field: str, value: Any
) -> None:
    ann = game.player("ann")
    game.score(ann, 10)
    good = game.receive(visibility_timeout=0)
    body = json.loads(good[0]["Body"]) | {field: value}
    game.stack.sqs.send_message(QueueUrl=game.queue_url, MessageBody=json.dumps(body))

    result = game.deliver(good + game.receive(visibility_timeout=0))

    assert len(result["batchItemFailures"]) == 1
    assert points("global") == {ann.user_id: 10}


def test_a_season_redis_lost_never_overwrites_its_archive(game: Game, clock: Clock) -> None:
    ann, bob, cid = game.player("ann"), game.player("bob"), game.player("cid")
    game.score(ann, 30)
    game.score(bob, 20)
    game.drain()
    clock.now_ms = clock.week_end_ms - 1
    game.score(cid, 5)  # accepted before the reset, applied after Redis came back empty
    clock.now_ms = clock.week_end_ms + 15 * 60_000
    roll_over_seasons.lambda_handler(load_event("roll_over_seasons"), FakeLambdaContext())
    client = game.redis
    client.delete(*client.scan_iter(match=f"{os.environ['REDIS_KEY_PREFIX']}:*"))
    game.drain()

    again = roll_over_seasons.lambda_handler(load_event("roll_over_seasons"), FakeLambdaContext())

    week = clock.season("weekly")
    assert f"weekly/{week}" not in again["archived"]  # one player where the archive has two
    rebuild_board.lambda_handler({"board": "weekly", "season": week}, FakeLambdaContext())
    assert f"weekly/{week}" in roll_over_seasons.lambda_handler({}, FakeLambdaContext())["archived"]
    clock.now_ms = clock.unreadable_ms
    assert points("weekly", season=week) == {ann.user_id: 30, bob.user_id: 20, cid.user_id: 5}


def test_a_score_feeding_three_boards_wakes_their_publishers_in_one_request(game: Game, clock: Clock) -> None:
    game.score(game.player("ann"), 10)
    requests: list[str] = []
    real_send = aws.sqs().send_message_batch

    def counted(**kwargs: Any) -> Any:
        requests.append(kwargs["QueueUrl"])
        return real_send(**kwargs)

    with mock.patch.object(aws.sqs(), "send_message_batch", counted):
        game.drain()

    assert requests == [game.stack.physical_id("BoardChangesQueue")]
    woken = game.stack.sqs.receive_message(QueueUrl=requests[0], MaxNumberOfMessages=10)["Messages"]
    assert sorted(json.loads(message["Body"])["board"] for message in woken) == sorted(game_definitions().boards)


def test_a_score_accepted_after_a_reset_by_a_clock_ahead_of_the_consumer_s_lands_on_the_new_season(
    game: Game, clock: Clock
) -> None:
    boards = game_definitions().boards
    reset_ms = clock.week_end_ms  # the weekly and the daily boards reset together
    resetting = {
        board.id: (board.season_at(reset_ms - 1).name, board.season_at(reset_ms).name)
        for board in boards.values()
        if board.season_at(reset_ms - 1) != board.season_at(reset_ms)
    }
    ann = game.player("ann")
    clock.now_ms = reset_ms + 100  # the function that accepts the score: its clock has passed the reset
    game.score(ann, 10)
    batch = {message["MessageId"]: scores.PlayerChanged.parse(message["Body"]) for message in game.receive()}
    consumer_ms = reset_ms - 200  # the consumer's clock has not reached it yet

    synced = board_sync.sync(batch, consumer_ms)
    board_sync.update_boards(synced.points, consumer_ms)

    assert {"weekly", "daily-best"} <= resetting.keys()
    for board_id, (ended, started) in resetting.items():
        assert [(total.user_id, total.total) for total in synced.points[board_id, started]] == [(ann.user_id, 10)]
        assert (board_id, ended) not in synced.points, "nothing of it in the season that ended"
    clock.now_ms = reset_ms + 1000  # a reader after the reset: the new seasons' boards have the points
    for board_id, (_, started) in resetting.items():
        status, body = page(board_id)
        shown = [(entry["user_id"], entry["score"]) for entry in body["items"]]
        assert (status, body["season"], shown) == (200, started, [(ann.user_id, 10)]), board_id
