"""The live feed's budget, its messages and how publishes are packed into LiveEventsQueue messages (no network)."""

import json

import pytest

from leaderboard import live
from leaderboard.board import RankChange, RankChanges, Snapshot, Standing
from leaderboard.live import Budget
from leaderboard.messages import Publish, rank_message, top10_message

DEFAULTS = Budget(deliveries_per_hour=3_600_000, min_per_second=0.2, max_per_second=4)


@pytest.mark.parametrize(
    ("viewers", "rate"),
    [
        (0, 4),  # nobody counted yet: as fast as allowed
        (1, 4),
        (250, 4),  # 1,000 deliveries a second over 250 viewers is exactly the ceiling
        (1_000, 1),
        (2_000, 0.5),
        (5_000, 0.2),  # ...and here the budget meets the floor
        (100_000, 0.2),  # the floor wins over the budget
    ],
)
def test_the_top10_rate_is_the_budget_over_the_audience_within_floor_and_ceiling(viewers: int, rate: float) -> None:
    assert DEFAULTS.top10_rate(viewers, personal_per_second=0) == pytest.approx(rate)


def test_watchers_pushes_come_out_of_the_same_budget() -> None:
    # 1,000 deliveries a second: 600 went to watchers, so 1,000 viewers share the 400 left.
    assert DEFAULTS.top10_rate(1_000, personal_per_second=600) == pytest.approx(0.4)
    assert DEFAULTS.top10_rate(1_000, personal_per_second=5_000) == pytest.approx(0.2)  # never below the floor


@pytest.mark.parametrize(
    ("budget", "cycle_seconds", "allowance"),
    [
        (DEFAULTS, 0.25, 250),  # 1,000 a second, a quarter-second cycle
        (DEFAULTS, 5, 2_000),  # a long cycle still sends no more than the per-second cap at once
        (Budget(3600, 0.2, 4), 0.25, 1),  # one delivery a second: still one push a cycle, so every change gets out
        (Budget(36_000_000, 0.2, 4), 1, live.MAX_PERSONAL_PER_SECOND),  # a rich budget meets the inbound quota's share
    ],
)
def test_a_cycle_pushes_to_at_most_its_share_of_watchers(budget: Budget, cycle_seconds: float, allowance: int) -> None:
    assert budget.personal_allowance(cycle_seconds) == allowance


def standing(user_id: str, rank: int, score: int) -> Standing:
    return Standing(user_id=user_id, user_name=user_id.title(), rank=rank, score=score)


def test_a_top10_message_names_its_board_and_season_and_carries_the_version() -> None:
    snapshot = Snapshot(seq=7, top_seq=7, published_top_seq=3, top=[standing("ann", 1, 300)], viewers=2)

    message = json.loads(top10_message("weekly", "2026-W49", snapshot))

    assert message == {
        "type": "top10",
        "board": "weekly",
        "season": "2026-W49",
        "seq": 7,
        "items": [{"user_id": "ann", "user_name": "Ann", "rank": 1, "score": 300}],
    }


def test_a_rank_message_says_where_the_player_was_on_which_board_and_season() -> None:
    message = json.loads(
        rank_message("weekly", "2026-W49", RankChange(standing("ann", 2, 300), previous_rank=1), seq=9)
    )

    assert message == {
        "type": "rank",
        "seq": 9,
        "user_id": "ann",
        "user_name": "Ann",
        "rank": 2,
        "score": 300,
        "previous_rank": 1,
        "board": "weekly",
        "season": "2026-W49",
    }


def test_a_cycle_publishes_the_top10_first_then_each_watchers_standing_on_their_own_channel() -> None:
    snapshot = Snapshot(seq=7, top_seq=7, published_top_seq=3, top=[standing("ann", 1, 300)], viewers=2)
    ranks = RankChanges(7, [RankChange(standing("ann", 1, 300), None)], more=False, next_start=0)

    publishes = live._publishes("global", "all", snapshot, ranks)

    assert [publish.channel for publish in publishes] == ["/boards/global", "/players/ann"]
    quiet = Snapshot(seq=8, top_seq=7, published_top_seq=7, top=snapshot.top, viewers=2)
    assert [publish.channel for publish in live._publishes("global", "all", quiet, ranks)] == ["/players/ann"]
    weekly = live._publishes("weekly", "2026-W49", snapshot, ranks)
    assert [publish.channel for publish in weekly] == ["/boards/weekly", "/players/ann/weekly"]


@pytest.mark.parametrize("name", ["Ann", "Ünïcødé ✓", "\ufffe\uffff"])
def test_publishes_are_packed_in_order_into_ascii_messages_ten_of_which_fit_one_sqs_batch(name: str) -> None:
    publishes = [
        Publish(f"/players/p{index:05d}", (json.dumps({"name": name * 20, "index": index}),)) for index in range(900)
    ]

    bodies = list(live.messages_of(publishes))

    unpacked = [
        Publish(item["channel"], tuple(item["events"])) for body in bodies for item in json.loads(body)["publishes"]
    ]
    assert unpacked == publishes
    assert len(bodies) > 1
    assert all(len(body.encode()) <= live.BYTES_PER_MESSAGE for body in bodies)
    assert 10 * max(len(body.encode()) for body in bodies) <= 256 * 1024  # SendMessageBatch's limit
    assert all(body.isascii() for body in bodies)  # SQS refuses some characters a name may hold


def test_no_publishes_make_no_messages() -> None:
    assert list(live.messages_of([])) == []
