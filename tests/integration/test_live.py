"""The live feed in-process: the board's version, publishing lease, watcher registry and audience against the real
Redis; the authorizer, the onSubscribe handler, the publisher and the sender against moto (tables and queues from
template.yaml), driven as AppSync and the SQS event sources would drive them."""

import json
import os
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from unittest import mock

import pytest
from aws_lambda_powertools.event_handler.events_appsync.exceptions import UnauthorizedException

from functions.live import on_subscribe, publish_board, publish_events
from functions.login import authorize_live
from functions.scores import rebuild_board
from leaderboard import event_api, live, signing_keys, tokens
from leaderboard.board import AUDIENCE_WINDOW_MS, WATCH_MS, Board, LeaseLost, PlayerTotal, RedisClient
from leaderboard.config import settings
from leaderboard.identity import Identity
from tests.conftest import FakeLambdaContext, load_event
from tests.integration.conftest import Game, Stack

# --- the board's version, the publishing lease, watchers and audience (Redis alone) --------------------------------


class Clock:
    """The writer's clock, in epoch seconds, moved by the test."""

    def __init__(self) -> None:
        self.now = 1_795_795_200.0  # 2026-11-28T00:00:00Z

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def scoreboard(clock: Clock, redis_client: RedisClient) -> Iterator[Board]:
    name = f"test-{uuid.uuid4().hex[:12]}"
    scoreboard = Board(name, "all", redis_client, clock=clock)
    yield scoreboard
    for key in [*redis_client.scan_iter(match=scoreboard.key_pattern), *scoreboard.audience_keys()]:
        redis_client.delete(key)


def total(user_id: str, points: int, reached_at_ms: int = 1_795_795_200_000) -> PlayerTotal:
    return PlayerTotal(user_id, user_id.title(), points, reached_at_ms)


def finish(scoreboard: Board, lease: str, more: bool = False) -> bool:
    """Run one publishing cycle's bookkeeping as the publisher does, publishing nothing."""
    snapshot = scoreboard.snapshot()
    scoreboard.rank_changes(lease, limit=1000)
    return scoreboard.finish_cycle(lease, snapshot, more)


def test_a_change_takes_the_lease_and_later_changes_wait_for_its_publisher(scoreboard: Board) -> None:
    first = scoreboard.set_totals([total("ann", 10)])
    second = scoreboard.set_totals([total("bob", 20)])
    keep_going = finish(scoreboard, str(first.lease))
    third = scoreboard.set_totals([total("cid", 5)])

    assert first.lease is not None
    assert second.lease is None
    assert keep_going is False  # nothing newer than what it published: the lease is given back...
    assert third.lease is not None  # ...and the next change takes it


def test_a_write_that_changes_nothing_keeps_the_version_and_wakes_nobody(scoreboard: Board) -> None:
    scoreboard.set_totals([total("ann", 10)])
    before = scoreboard.snapshot()

    again = scoreboard.set_totals(
        [total("ann", 10), total("ann", 7), total("ann", 10, reached_at_ms=1_795_795_300_000)]
    )

    assert (again.applied, again.lease) == (0, None)
    assert scoreboard.snapshot().seq == before.seq


def test_a_change_during_a_cycle_keeps_the_publisher_going_until_it_has_published_the_last(scoreboard: Board) -> None:
    lease = str(scoreboard.set_totals([total("ann", 10)]).lease)
    snapshot = scoreboard.snapshot()
    scoreboard.set_totals([total("bob", 20)])  # while the cycle publishes

    assert scoreboard.finish_cycle(lease, snapshot, more=False) is True
    assert finish(scoreboard, lease) is False


def test_a_publisher_that_lost_its_lease_stops_and_leaves_the_new_holder_alone(
    scoreboard: Board, redis_client: RedisClient
) -> None:
    lease = str(scoreboard.set_totals([total("ann", 10)]).lease)
    redis_client.set(scoreboard.keys["publishing"], "another-publisher")

    with pytest.raises(LeaseLost):
        scoreboard.rank_changes(lease, limit=10)
    assert scoreboard.finish_cycle(lease, scoreboard.snapshot(), more=False) is False
    assert redis_client.get(scoreboard.keys["publishing"]) == b"another-publisher"


def test_the_top_10_version_moves_only_when_the_top_10_changes(scoreboard: Board) -> None:
    scoreboard.set_totals([total(f"p{index:02d}", 100 + index) for index in range(10)])
    top_before = scoreboard.snapshot().top_seq

    scoreboard.set_totals([total("low", 1)])  # 11th: below the top 10
    unchanged = scoreboard.snapshot()
    scoreboard.set_totals([total("high", 1_000)])
    changed = scoreboard.snapshot()

    assert unchanged.top_seq == top_before < unchanged.seq
    assert changed.top_seq == changed.seq > unchanged.seq


def test_the_version_comes_from_the_writers_clock_and_keeps_rising_when_redis_comes_back_empty(
    scoreboard: Board, clock: Clock, redis_client: RedisClient
) -> None:
    scoreboard.set_totals([total("ann", 10)])
    first = scoreboard.snapshot().seq
    scoreboard.set_totals([total("ann", 20)])  # within the same microsecond: one more

    second = scoreboard.snapshot().seq
    redis_client.delete(*scoreboard.keys.values())  # Redis restarted empty...
    clock.now += 1
    scoreboard.set_totals([total("ann", 20)])

    assert first == int(clock.now - 1) * 1_000_000  # no TIME in any script: the caller's clock
    assert second == first + 1
    assert scoreboard.snapshot().seq > second  # ...and the version still rose


def test_a_watcher_is_owed_their_standing_at_once_and_then_only_when_it_moves(scoreboard: Board) -> None:
    lease = str(scoreboard.set_totals([total("ann", 300), total("bob", 200)]).lease)
    assert finish(scoreboard, lease) is False  # nobody watches: no standing to tell

    took = scoreboard.watch("bob")
    first = scoreboard.rank_changes(str(took), limit=10)
    scoreboard.finish_cycle(str(took), scoreboard.snapshot(), first.more)
    lease = str(scoreboard.set_totals([total("cid", 250)]).lease)  # passes bob
    second = scoreboard.rank_changes(lease, limit=10)
    scoreboard.finish_cycle(lease, scoreboard.snapshot(), second.more)
    lease = str(scoreboard.set_totals([total("ann", 400)]).lease)  # bob does not move
    third = scoreboard.rank_changes(lease, limit=10)

    assert took is not None  # subscribing woke a publisher for bob's standing
    assert [(c.standing.user_id, c.standing.rank, c.previous_rank) for c in first.changes] == [("bob", 2, None)]
    assert [(c.standing.user_id, c.standing.rank, c.previous_rank) for c in second.changes] == [("bob", 3, 2)]
    assert third.changes == []


def test_subscribing_again_resends_the_standing_with_the_rank_last_told(scoreboard: Board) -> None:
    finish(scoreboard, str(scoreboard.set_totals([total("ann", 300)]).lease))
    lease = str(scoreboard.watch("ann"))
    scoreboard.finish_cycle(lease, scoreboard.snapshot(), scoreboard.rank_changes(lease, limit=10).more)

    again = str(scoreboard.watch("ann"))  # the page renewed its subscription, or reloaded
    (change,) = scoreboard.rank_changes(again, limit=10).changes

    assert (change.standing.rank, change.previous_rank) == (1, 1)


def test_a_player_with_no_score_who_subscribes_is_watched_but_wakes_nobody(scoreboard: Board) -> None:
    finish(scoreboard, str(scoreboard.set_totals([total("ann", 300)]).lease))

    assert scoreboard.watch("newcomer") is None
    lease = str(scoreboard.set_totals([total("newcomer", 10)]).lease)
    (change,) = scoreboard.rank_changes(lease, limit=10).changes
    assert (change.standing.user_id, change.standing.rank, change.previous_rank) == ("newcomer", 2, None)


def test_a_watcher_who_stops_renewing_is_forgotten(scoreboard: Board, clock: Clock, redis_client: RedisClient) -> None:
    finish(scoreboard, str(scoreboard.set_totals([total("ann", 300)]).lease))
    lease = str(scoreboard.watch("ann"))
    scoreboard.finish_cycle(lease, scoreboard.snapshot(), scoreboard.rank_changes(lease, limit=10).more)

    clock.now += WATCH_MS / 1000 + 1
    lease = str(scoreboard.set_totals([total("ann", 400)]).lease)

    assert scoreboard.rank_changes(lease, limit=10).changes == []
    assert redis_client.zcard(scoreboard.keys["watchers"]) == 0
    assert redis_client.hlen(scoreboard.keys["notified"]) == 0  # what they were told goes with them


def test_a_cycle_takes_at_most_its_allowance_and_the_next_goes_on_from_there(scoreboard: Board) -> None:
    players = [f"p{index}" for index in range(5)]
    lease = str(scoreboard.set_totals([total(player, 100) for player in players]).lease)
    for player in players:
        scoreboard.watch(player)

    told: list[str] = []
    cycles, start, keep_going = 0, 0, True
    while keep_going:
        snapshot = scoreboard.snapshot()
        ranks = scoreboard.rank_changes(lease, limit=2, start=start)
        told += [change.standing.user_id for change in ranks.changes]
        keep_going, start, cycles = scoreboard.finish_cycle(lease, snapshot, ranks.more), ranks.next_start, cycles + 1

    assert sorted(told) == players  # each exactly once
    assert cycles == 3  # 2 + 2 + 1, the lease kept until the last


def test_a_subscription_during_a_cycle_keeps_the_publisher_going(scoreboard: Board) -> None:
    lease = str(scoreboard.set_totals([total("ann", 300)]).lease)
    snapshot = scoreboard.snapshot()
    scoreboard.rank_changes(lease, limit=10)
    assert scoreboard.watch("ann") is None  # the publisher holds the lease...

    assert scoreboard.finish_cycle(lease, snapshot, more=False) is True  # ...so it goes round once more for ann
    (change,) = scoreboard.rank_changes(lease, limit=10).changes
    assert change.standing.user_id == "ann"


def test_the_audience_counts_subscriptions_over_the_last_window(scoreboard: Board, clock: Clock) -> None:
    clock.now = (clock.now * 1000 // AUDIENCE_WINDOW_MS) * AUDIENCE_WINDOW_MS / 1000  # the start of a window
    for _ in range(4):
        scoreboard.count_viewer()
    clock.now += AUDIENCE_WINDOW_MS / 1000 * 1.25  # a quarter into the next window
    scoreboard.count_viewer()

    # 1 this window, and three quarters of the 4 before: the last AUDIENCE_WINDOW_MS.
    assert scoreboard.snapshot().viewers == pytest.approx(1 + 4 * 0.75)
    clock.now += AUDIENCE_WINDOW_MS / 1000 * 2
    assert scoreboard.snapshot().viewers == 0  # nobody renewed: nobody is watching


def test_only_the_lease_holder_records_standings(scoreboard: Board, redis_client: RedisClient) -> None:
    scoreboard.set_totals([total("ann", 300)])
    scoreboard.watch("ann")

    with pytest.raises(LeaseLost):
        scoreboard.rank_changes("not-the-holder", limit=10)
    assert redis_client.hlen(scoreboard.keys["notified"]) == 0


def test_an_expired_lease_is_taken_again_when_changes_are_still_unpublished(
    scoreboard: Board, redis_client: RedisClient
) -> None:
    lease = str(scoreboard.set_totals([total("ann", 10)]).lease)
    snapshot = scoreboard.snapshot()
    redis_client.delete(scoreboard.keys["publishing"])  # expired mid-cycle
    scoreboard.set_totals([total("bob", 20)])  # took the lease and woke another publisher

    assert scoreboard.finish_cycle(lease, snapshot, more=False) is False  # that one answers for it now


def test_the_safety_net_claims_the_lease_only_for_something_unpublished(
    scoreboard: Board, redis_client: RedisClient
) -> None:
    assert scoreboard.claim() is None  # nothing ever changed
    scoreboard.set_totals([total("ann", 10)])
    redis_client.delete(scoreboard.keys["publishing"])  # the wake-up was lost

    lease = scoreboard.claim()
    assert lease is not None
    finish(scoreboard, lease)
    assert scoreboard.claim() is None
    scoreboard.watch("ann")  # owed a standing, and the wake-up lost
    redis_client.delete(scoreboard.keys["publishing"])
    assert scoreboard.claim() is not None


# --- the functions, driven as AppSync and the queues' event sources would (moto) ------------------------------------


class Live:
    """Subscribes through the onSubscribe handler and runs the publisher; what it queues is what would be published."""

    def __init__(self, game: Game) -> None:
        self.game = game
        self.sqs = game.stack.sqs
        self.wake_ups_url = game.stack.physical_id("BoardChangesQueue")
        self.events_url = game.stack.physical_id("LiveEventsQueue")
        self.published: list[tuple[str, dict[str, Any]]] = []

    def subscribe(self, channel: str, caller: Identity | None = None) -> Any:
        """Invoke the onSubscribe handler as AppSync does after the authorizer let `caller` (None: anonymous) in."""
        event = load_event("on_subscribe_board")
        event["identity"]["handlerContext"] = caller.as_context() if caller else {}
        segments = channel.strip("/").split("/")
        event["info"] |= {"channel": {"path": channel, "segments": segments}, "channelNamespace": {"name": segments[0]}}
        return on_subscribe.lambda_handler(event, FakeLambdaContext())

    def view(self) -> None:
        assert self.subscribe("/boards/global") is None

    def watch(self, player: Identity) -> None:
        assert self.subscribe(f"/players/{player.user_id}", player) is None

    def take(self, queue_url: str, wait_seconds: int = 0) -> list[dict[str, Any]]:
        """Every message of the queue (the first receive waits up to `wait_seconds` for a delayed one)."""
        messages = []
        receive = {"QueueUrl": queue_url, "MaxNumberOfMessages": 10, "WaitTimeSeconds": wait_seconds}
        while batch := self.sqs.receive_message(**receive).get("Messages", []):
            receive["WaitTimeSeconds"] = 0
            for message in batch:
                self.sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
            messages += batch
        return messages

    def publish(self) -> int:
        """Run the publisher on each wake-up waiting, then collect what it queued; the number of wake-ups."""
        wake_ups = self.take(self.wake_ups_url)
        for wake_up in wake_ups:
            event = load_event("publish_board")
            event["Records"][0]["body"] = wake_up["Body"]
            publish_board.lambda_handler(event, FakeLambdaContext())
        self.collect()
        return len(wake_ups)

    def run_safety_net(self) -> int:
        """The schedule's run, then the publishers it woke; the number of wake-ups it sent."""
        publish_board.lambda_handler(load_event("publish_board_scheduled"), FakeLambdaContext())
        return self.publish()

    def collect(self) -> None:
        for message in self.take(self.events_url):
            for publish in json.loads(message["Body"])["publishes"]:
                self.published += [(publish["channel"], json.loads(event)) for event in publish["events"]]

    def to(self, channel: str) -> list[dict[str, Any]]:
        return [message for published_to, message in self.published if published_to == channel]

    def published_tops(self) -> list[dict[str, Any]]:
        """Every top-10 message, whatever its board."""
        return [message for channel, message in self.published if channel.startswith("/boards/")]

    def tops(self) -> list[dict[str, Any]]:
        return self.to("/boards/global")

    def ranks(self, player: Identity) -> list[dict[str, Any]]:
        return self.to(f"/players/{player.user_id}")


# The publishing mechanics are the same for every board: these tests watch one, `global` (all time), alone.
ONE_BOARD = json.dumps(
    {
        "action_types": {"match": {"max_score": 1000, "lifetime_seconds": 3600}},
        "boards": [{"id": "global", "title": "All", "action_types": ["match"], "aggregate": "sum", "reset": "none"}],
    }
)


@pytest.fixture
def game_live(game: Game) -> Iterator[Live]:
    with mock.patch.dict(os.environ, {"GAME": ONE_BOARD}):
        yield Live(game)


def test_a_score_publishes_the_top10_once_and_each_watching_player_their_own_standing(game_live: Live) -> None:
    game = game_live.game
    ann, bob, cid = game.player("ann"), game.player("bob"), game.player("cid")
    game_live.watch(ann)
    game_live.watch(bob)  # cid plays but does not watch

    game.score(ann, 300)
    game.drain()
    assert game_live.publish() == 1
    game.score(bob, 500)
    game.score(cid, 400)
    game.drain()
    assert game_live.publish() == 1

    first_top, second_top = game_live.tops()
    assert first_top == {"type": "top10", "board": "global", "season": "all", "seq": first_top["seq"]} | {
        "items": [game.top()[2] | {"rank": 1}]
    }
    assert second_top["items"] == game.top()
    assert second_top["seq"] > first_top["seq"]
    first_rank, passed = game_live.ranks(ann)
    assert first_rank == {
        "type": "rank",
        "seq": first_top["seq"],
        "user_id": ann.user_id,
        "user_name": "Ann",
        "rank": 1,
        "score": 300,
        "previous_rank": None,
        "board": "global",
        "season": "all",
    }
    assert (passed["seq"], passed["rank"], passed["previous_rank"]) == (second_top["seq"], 3, 1)
    assert [(message["rank"], message["previous_rank"]) for message in game_live.ranks(bob)] == [(1, None)]
    assert game_live.ranks(cid) == []


def test_every_board_a_score_feeds_publishes_its_current_season_and_the_players_rank_on_its_own_channel(
    game: Game,
) -> None:
    every_board = Live(game)  # the template's game: global, weekly and daily-best
    ann, bob = game.player("ann"), game.player("bob")
    every_board.subscribe(f"/players/{ann.user_id}/weekly", ann)  # ann watches her standing this week
    game.score(ann, 300)
    game.score(ann, 200)
    game.score(bob, 400)
    game.drain()

    assert every_board.publish() == 3  # a wake-up and a publisher per board (sent in one request, see below)

    tops = {message["board"]: message for message in every_board.published_tops()}
    assert set(tops) == {"global", "weekly", "daily-best"}
    assert tops["global"]["season"] == "all"
    assert tops["weekly"]["season"] == game.board("weekly").season
    assert tops["daily-best"]["season"] == game.board("daily-best").season
    scores = {board_id: [(e["user_id"], e["score"]) for e in top["items"]] for board_id, top in tops.items()}
    assert scores["global"] == scores["weekly"] == [(ann.user_id, 500), (bob.user_id, 400)]
    assert scores["daily-best"] == [(bob.user_id, 400), (ann.user_id, 300)]  # best single match
    (weekly_rank,) = every_board.to(f"/players/{ann.user_id}/weekly")
    assert (weekly_rank["board"], weekly_rank["rank"], weekly_rank["score"]) == ("weekly", 1, 500)
    assert every_board.ranks(ann) == []  # her all-time channel: she does not watch it


def test_the_publishers_work_per_change_does_not_depend_on_the_audience(game_live: Live) -> None:
    game = game_live.game
    ann = game.player("ann")
    queued = []
    for viewers in (1, 50):
        for _ in range(viewers):
            game_live.view()
        game.score(ann, 100)
        game.drain()
        before = len(game_live.published)
        game_live.publish()
        queued.append(len(game_live.published) - before)

    assert queued == [1, 1]  # one top-10 publish, whoever watches; AppSync delivers it to each


def test_a_new_watcher_is_sent_their_standing_at_once_and_the_next_change_says_where_they_were(
    game_live: Live,
) -> None:
    game = game_live.game
    ann, bob = game.player("ann"), game.player("bob")
    game.score(ann, 300)
    game.drain()
    game_live.publish()

    game_live.watch(ann)  # subscribing wakes a publisher: no change needed
    assert game_live.publish() == 1
    game.score(bob, 500)
    game.drain()
    game_live.publish()

    arrived, passed = game_live.ranks(ann)
    assert (arrived["rank"], arrived["score"], arrived["previous_rank"]) == (1, 300, None)
    assert (passed["rank"], passed["previous_rank"]) == (2, 1)  # never null for a watcher


def test_many_batches_wake_one_publisher_and_it_publishes_the_last_board(game_live: Live) -> None:
    game = game_live.game
    players = [game.player(f"p{index}") for index in range(5)]

    for points, player in enumerate(players, start=1):
        game.score(player, points * 100)
        game.drain()  # one consumer batch each

    assert game_live.publish() == 1
    (pushed,) = game_live.tops()
    assert pushed["items"] == game.top()
    assert len(pushed["items"]) == 5


@pytest.mark.parametrize(
    ("channel", "caller"),
    [
        ("/players/{other}", "ann"),  # another player's channel
        ("/players/{own}", None),  # anonymous, on a player's channel
        ("/players/*", "ann"),  # every player's channel at once
        ("/players/{other}/weekly", "ann"),  # another player's standing on another board
    ],
)
def test_only_a_player_may_subscribe_to_their_own_channel(game_live: Live, channel: str, caller: str | None) -> None:
    ann, bob = game_live.game.player("ann"), game_live.game.player("bob")
    path = channel.format(own=ann.user_id, other=bob.user_id)

    # Powertools lets UnauthorizedException out of a subscribe handler: the invocation fails, AppSync refuses.
    with pytest.raises(UnauthorizedException):
        game_live.subscribe(path, ann if caller else None)
    assert game_live.game.redis.zcard(game_live.game.board().keys["watchers"]) == 0


@pytest.mark.parametrize("channel", ["/boards/no-such-board", "/boards/*", "/boards", "/boards/{board}/more"])
def test_subscriptions_to_boards_this_stack_does_not_keep_are_refused(game_live: Live, channel: str) -> None:
    answer = game_live.subscribe(channel.format(board="global"))

    assert answer == {"error": answer["error"]}
    assert "UnknownChannel" in answer["error"]
    assert game_live.game.board().snapshot().viewers == 0  # and counted nowhere


@pytest.mark.parametrize("channel", ["/players/{own}/no-such-board", "/players/{own}/global", "/players/{own}/*"])
def test_a_players_own_channel_for_a_board_this_stack_does_not_keep_is_refused(game_live: Live, channel: str) -> None:
    ann = game_live.game.player("ann")

    answer = game_live.subscribe(channel.format(own=ann.user_id), ann)

    assert "UnknownChannel" in answer["error"]  # global's own channel is /players/<user_id> itself
    assert game_live.game.redis.zcard(game_live.game.board().keys["watchers"]) == 0


def test_anyone_may_watch_a_board_and_counts_towards_its_audience(game_live: Live) -> None:
    for _ in range(3):
        game_live.view()

    assert game_live.game.board().snapshot().viewers == 3


def test_the_consumer_never_waits_on_publishing_and_a_failed_wake_up_only_defers_it(game_live: Live) -> None:
    game = game_live.game
    ann = game.player("ann")
    game.score(ann, 100)
    unreachable = {"BOARD_CHANGES_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/no-such-queue"}
    with mock.patch.dict(os.environ, unreachable):
        assert game.deliver(game.receive())["batchItemFailures"] == []  # the scores are applied all the same

    assert game.top()[0]["score"] == 100
    assert game_live.publish() == 0  # nothing woke; the lease was given back...
    game.score(ann, 50)
    game.drain()
    assert game_live.publish() == 1  # ...so the next change wakes a publisher, with the whole board
    (pushed,) = game_live.tops()
    assert pushed["items"][0]["score"] == 150


def test_the_consumer_queues_no_event_itself(game_live: Live) -> None:
    game = game_live.game
    game_live.watch(game.player("ann"))
    game_live.take(game_live.wake_ups_url)
    game.score(game.player("bob"), 100)

    game.drain()

    assert len(game_live.take(game_live.wake_ups_url)) == 1  # one small message; the events are the publisher's
    assert game_live.take(game_live.events_url) == []


def test_a_publisher_near_its_deadline_hands_over_with_its_lease(
    game_live: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    game = game_live.game
    ann, bob = game.player("ann"), game.player("bob")
    game.score(ann, 100)
    game.drain()
    (wake_up,) = game_live.take(game_live.wake_ups_url)
    lease = live.WakeUp.of(wake_up["Body"]).lease
    real_queue = live._queue

    def queue_then_a_score_arrives(publishes: Any) -> int:
        requests = real_queue(publishes)
        monkeypatch.setattr(live, "_queue", real_queue)
        game.score(bob, 300)
        game.drain()  # applied while the lease is held: no wake-up of its own
        return requests

    monkeypatch.setattr(live, "_queue", queue_then_a_score_arrives)
    assert live.publish_changes(game_live.game.board(), lease, lambda: 1_000).cycles == 1

    (hand_over,) = game_live.take(game_live.wake_ups_url, wait_seconds=2)  # delayed by the cycle's wait
    assert live.WakeUp.of(hand_over["Body"]).lease != lease  # the publisher's own token, adopted at its start...
    assert live.publish_changes(game_live.game.board(), lease, lambda: 10_000).cycles == 0  # ...so a stale copy stops
    game_live.sqs.send_message(QueueUrl=game_live.wake_ups_url, MessageBody=hand_over["Body"])
    game_live.publish()
    assert game_live.tops()[-1]["items"] == game.top()


def test_a_failed_cycle_gives_the_lease_back_and_is_redone_whole(
    game_live: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    game = game_live.game
    ann = game.player("ann")
    game_live.watch(ann)
    game.score(ann, 100)
    game.drain()
    (wake_up,) = game_live.take(game_live.wake_ups_url)
    real_queue = live._queue

    def sqs_refuses(publishes: Any) -> int:
        raise RuntimeError("LiveEventsQueue refused 1 messages")  # the cycle is built, nothing is queued

    monkeypatch.setattr(live, "_queue", sqs_refuses)
    with pytest.raises(RuntimeError):
        live.publish_changes(game_live.game.board(), live.WakeUp.of(wake_up["Body"]).lease, lambda: 10_000)
    monkeypatch.setattr(live, "_queue", real_queue)
    game_live.run_safety_net()

    assert len(game_live.tops()) == 1
    assert [(message["rank"], message["score"]) for message in game_live.ranks(ann)] == [(1, 100)]


def test_a_lost_wake_up_is_covered_by_the_safety_net(game_live: Live) -> None:
    game = game_live.game
    assert game_live.run_safety_net() == 0
    assert game_live.published == []  # nothing changed: nothing to do
    game.score(game.player("ann"), 100)
    game.drain()
    (lost,) = game_live.take(game_live.wake_ups_url)  # the wake-up is lost, and its lease expires
    game_live.game.board().abandon(live.WakeUp.of(lost["Body"]).lease)

    assert game_live.run_safety_net() == 1  # a wake-up for the board left behind

    assert game_live.tops()[-1]["items"] == game.top()


def test_a_duplicated_wake_up_publishes_nothing_twice(game_live: Live) -> None:
    game = game_live.game
    game.score(game.player("ann"), 100)
    game.drain()
    (wake_up,) = game_live.take(game_live.wake_ups_url)

    for _ in range(2):  # SQS delivers at least once
        game_live.sqs.send_message(QueueUrl=game_live.wake_ups_url, MessageBody=wake_up["Body"])
        game_live.publish()

    assert len(game_live.tops()) == 1


def test_a_rebuilt_board_is_published_like_any_change(game_live: Live) -> None:
    game = game_live.game
    game.score(game.player("ann"), 100)
    game.drain()
    game_live.publish()
    client = game_live.game.redis
    client.delete(*client.scan_iter(match=game_live.game.board().key_pattern))  # Redis came back empty

    rebuild_board.lambda_handler(load_event("rebuild_board"), FakeLambdaContext())
    game_live.publish()

    first, rebuilt = game_live.tops()
    assert rebuilt["items"] == first["items"] == game.top()
    assert rebuilt["seq"] > first["seq"]


class Sleeps:
    def __init__(self) -> None:
        self.seconds: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.seconds.append(seconds)


def test_a_large_audience_slows_the_top10_to_what_the_budget_allows(
    game_live: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    game = game_live.game
    for _ in range(20):
        game_live.view()
    game.score(game.player("ann"), 100)
    game.drain()
    (wake_up,) = game_live.take(game_live.wake_ups_url)
    lease = live.WakeUp.of(wake_up["Body"]).lease
    sleeps = Sleeps()
    monkeypatch.setattr(live.time, "sleep", sleeps)
    real_queue = live._queue

    def a_score_arrives_meanwhile(publishes: Any) -> int:
        monkeypatch.setattr(live, "_queue", real_queue)
        game.score(game.player("bob"), 200)
        game.drain()
        return real_queue(publishes)

    monkeypatch.setattr(live, "_queue", a_score_arrives_meanwhile)
    budget = live.Budget(deliveries_per_hour=36_000, min_per_second=0.2, max_per_second=4)  # 10 a second

    assert live.publish_changes(game_live.game.board(), lease, lambda: 60_000, budget).cycles == 2
    # After each cycle (bob's score came during the first): 20 viewers share 10 deliveries a second.
    assert len(sleeps.seconds) == 2
    assert all(1.5 < pause <= 2.0 for pause in sleeps.seconds)


def test_a_change_right_after_a_publish_waits_out_the_cycle_instead_of_waking_another_publisher(
    game_live: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    game = game_live.game
    game.score(game.player("ann"), 100)
    game.drain()
    bob = game.player("bob")

    def a_score_arrives_during_the_wait(seconds: float) -> None:
        monkeypatch.setattr(live.time, "sleep", Sleeps())
        game.score(bob, 200)
        game.drain()  # the publisher holds the lease while it waits: this write wakes nobody

    monkeypatch.setattr(live.time, "sleep", a_score_arrives_during_the_wait)
    assert game_live.publish() == 1

    first, second = game_live.tops()
    assert len(first["items"]) == 1
    assert second["items"] == game.top()  # published by the same publisher, a cycle later
    assert game_live.take(game_live.wake_ups_url) == []


def test_watchers_beyond_a_cycles_allowance_are_told_in_the_next_cycles(
    game_live: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    game = game_live.game
    players = [game.player(f"p{index}") for index in range(3)]
    for player in players:
        game.score(player, 100)
    game.drain()
    game_live.publish()
    for player in players:
        game_live.watch(player)
    monkeypatch.setattr(live.time, "sleep", Sleeps())
    (wake_up,) = game_live.take(game_live.wake_ups_url)
    budget = live.Budget(deliveries_per_hour=3600, min_per_second=1, max_per_second=4)  # one push a cycle

    published = live.publish_changes(
        game_live.game.board(), live.WakeUp.of(wake_up["Body"]).lease, lambda: 60_000, budget
    )
    game_live.collect()

    assert (published.cycles, published.publishes) == (3, 3)
    assert all(len(game_live.ranks(player)) == 1 for player in players)


# --- the authorizer -------------------------------------------------------------------------------------------------


def access_token(player: Identity) -> str:
    return tokens.issue_access_token(
        player, signing_keys.keys.current(), issuer=settings.jwt_issuer, audience=settings.jwt_audience
    )


def test_anonymous_viewers_are_let_in_with_no_identity(game: Game) -> None:
    answer = authorize_live.lambda_handler(load_event("authorize_live_anonymous"), FakeLambdaContext())

    assert answer == {"isAuthorized": True, "handlerContext": {}, "ttlOverride": 3600}


@pytest.mark.parametrize("prefix", ["", "Bearer "])
def test_a_valid_access_token_is_let_in_as_its_player(game: Game, prefix: str) -> None:
    ann = game.player("ann")
    event = load_event("authorize_live_token")
    event["authorizationToken"] = prefix + access_token(ann)

    answer = authorize_live.lambda_handler(event, FakeLambdaContext())

    assert answer == {"isAuthorized": True, "handlerContext": ann.as_context(), "ttlOverride": 240}


@pytest.mark.parametrize("value", ["not-a-token", "", "Anonymous", "anonymous-ish", "{token}x", "{refresh}"])
def test_anything_else_is_refused(game: Game, value: str) -> None:
    ann = game.player("ann")
    event = load_event("authorize_live_garbage")
    event["authorizationToken"] = value.format(token=access_token(ann), refresh=f"{uuid.uuid4().hex}.{'a' * 43}")

    assert authorize_live.lambda_handler(event, FakeLambdaContext()) == {"isAuthorized": False}


def test_an_expired_access_token_is_refused(game: Game, monkeypatch: pytest.MonkeyPatch) -> None:
    event = load_event("authorize_live_token")
    monkeypatch.setattr(tokens.time, "time", lambda: 1_700_000_000)  # issued long ago
    event["authorizationToken"] = access_token(game.player("ann"))
    monkeypatch.undo()

    assert authorize_live.lambda_handler(event, FakeLambdaContext()) == {"isAuthorized": False}


# --- the sender: signed HTTP publishes to the Event API --------------------------------------------------------------


class EventApi(ThreadingHTTPServer):
    """Records the publishes it is sent; answers `status` (200: every event taken)."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Recorder)
        self.requests: list[tuple[dict[str, str], dict[str, Any]]] = []
        self.status = 200

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/event"


class _Recorder(BaseHTTPRequestHandler):
    server: EventApi

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append((dict(self.headers.items()), body))
        answer = {"failed": [], "successful": [{"identifier": str(uuid.uuid4()), "index": 0}]}
        data = json.dumps(answer if self.server.status == 200 else {"errors": []}).encode()
        self.send_response(self.server.status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def event_api_server(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[EventApi]:
    server = EventApi()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("EVENT_API_URL", server.url)
    event_api._http.cache_clear()
    event_api._session_credentials.cache_clear()  # the stack's, as a cold function reads them
    yield server
    server.shutdown()
    event_api._http.cache_clear()
    event_api._session_credentials.cache_clear()


def test_queued_publishes_are_sent_signed_with_the_functions_role(event_api_server: EventApi) -> None:
    event = load_event("publish_events")
    publishes = [{"channel": f"/players/p{index}", "events": [json.dumps({"index": index})]} for index in range(12)]
    event["Records"][0]["body"] = json.dumps({"publishes": publishes})

    publish_events.lambda_handler(event, FakeLambdaContext())

    assert sorted((body for _, body in event_api_server.requests), key=lambda body: body["channel"]) == sorted(
        publishes, key=lambda body: body["channel"]
    )
    for headers, _ in event_api_server.requests:
        assert headers["Authorization"].startswith("AWS4-HMAC-SHA256 Credential=")
        assert "/us-east-1/appsync/aws4_request" in headers["Authorization"]
        assert "X-Amz-Date" in headers


def test_a_publish_the_event_api_refuses_is_dropped_and_the_others_still_go(event_api_server: EventApi) -> None:
    event_api_server.status = 403
    event = load_event("publish_events")

    sent = event_api.send(record["body"] for record in event["Records"])

    assert (sent.sent, sent.failed) == (0, 1)
    assert len(event_api_server.requests) == 1  # a refusal is not retried; throttling and 5xx are
