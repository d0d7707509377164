"""Live pushes in-process: the board's version and publishing lease against the real Redis; the WebSocket handlers,
the publisher and the fan-out against moto (tables and queues from template.yaml), driven as API Gateway and the
SQS event sources would drive them."""

import json
import os
import uuid
from collections.abc import Iterator
from typing import Any
from unittest import mock
from urllib.parse import quote

import pytest
import redis
from moto.apigatewaymanagementapi.models import apigatewaymanagementapi_backends

from functions.live import close_connection, open_connection, post_to_connections, publish_board, send_top10
from functions.login import authorize_connection
from functions.scores import rebuild_board
from leaderboard import aws, board, connections, live, messages
from leaderboard.board import Board, LeaseLost, PlayerTotal
from leaderboard.identity import Identity
from tests.conftest import FakeLambdaContext, load_event
from tests.integration.conftest import REDIS_URL, Game

# --- the board's version and the publishing lease (Redis alone) ----------------------------------------------------


@pytest.fixture
def scoreboard() -> Iterator[Board]:
    client = redis.Redis.from_url(REDIS_URL)
    name = f"test-{uuid.uuid4().hex[:12]}"
    yield Board(name, client)
    for key in client.scan_iter(match=f"leaderboard:{{{name}}}:*"):
        client.delete(key)


def total(user_id: str, points: int, version: int = 1) -> PlayerTotal:
    return PlayerTotal(user_id, user_id.title(), points, version, reached_at_ms=1_795_795_200_000 + version)


def test_a_change_takes_the_lease_and_later_changes_wait_for_its_publisher(scoreboard: Board) -> None:
    first = scoreboard.set_totals([total("ann", 10)])
    second = scoreboard.set_totals([total("bob", 20)])
    published = scoreboard.published(str(first.lease), scoreboard.snapshot())
    third = scoreboard.set_totals([total("cid", 5)])

    assert first.lease is not None
    assert second.lease is None
    assert published is False  # nothing newer than what it published: the lease is given back...
    assert third.lease is not None  # ...and the next change takes it


def test_a_write_that_changes_nothing_keeps_the_version_and_wakes_nobody(scoreboard: Board) -> None:
    scoreboard.set_totals([total("ann", 10, version=2)])
    before = scoreboard.snapshot()

    again = scoreboard.set_totals([total("ann", 10, version=2), total("ann", 7, version=1)])

    assert (again.applied, again.lease) == (0, None)
    assert scoreboard.snapshot().seq == before.seq


def test_a_change_during_a_cycle_keeps_the_publisher_going_until_it_has_published_the_last(scoreboard: Board) -> None:
    lease = str(scoreboard.set_totals([total("ann", 10)]).lease)
    seen = scoreboard.snapshot()
    scoreboard.set_totals([total("bob", 20)])  # arrives while the cycle posts `seen`

    assert scoreboard.published(lease, seen) is True
    latest = scoreboard.snapshot()
    assert latest.seq > seen.seq
    assert scoreboard.published(lease, latest) is False


def test_a_publisher_that_lost_its_lease_stops_and_leaves_the_new_holder_alone(scoreboard: Board) -> None:
    stale = str(scoreboard.set_totals([total("ann", 10)]).lease)
    redis.Redis.from_url(REDIS_URL).delete(scoreboard.keys[5])  # the lease expired: its holder died, say
    fresh = scoreboard.set_totals([total("bob", 20)]).lease
    scoreboard.set_totals([total("cid", 30)])

    assert scoreboard.published(stale, scoreboard.snapshot()) is False
    assert fresh is not None
    assert scoreboard.set_totals([total("dan", 40)]).lease is None  # still held by the fresh publisher
    scoreboard.abandon(stale)  # giving up a lease that is not yours changes nothing
    assert scoreboard.set_totals([total("eve", 50)]).lease is None


def test_the_top_10_version_moves_only_when_the_top_10_changes(scoreboard: Board) -> None:
    scoreboard.set_totals([total(f"p{rank:02d}", 1000 - rank) for rank in range(1, 13)])
    filled = scoreboard.snapshot()
    scoreboard.set_totals([total("p12", 989, version=2)])  # 12th gains a point and stays 12th
    below = scoreboard.snapshot()
    scoreboard.set_totals([total("p12", 5000, version=3)])
    passed = scoreboard.snapshot()

    assert filled.top_seq == filled.seq
    assert filled.top_is_new
    assert below.seq > filled.seq
    assert below.top_seq == filled.top_seq
    assert passed.top_seq == passed.seq
    assert [entry.user_id for entry in passed.top][:2] == ["p12", "p01"]


def test_the_version_keeps_rising_when_redis_comes_back_empty(scoreboard: Board) -> None:
    scoreboard.set_totals([total("ann", 10)])
    before = scoreboard.snapshot().seq
    redis.Redis.from_url(REDIS_URL).delete(*scoreboard.keys)

    scoreboard.set_totals([total("ann", 10)])

    assert scoreboard.snapshot().seq > before  # so clients holding the old board take the new one


def told(scoreboard: Board, lease: str, user_ids: list[str]) -> tuple[int, list[board.RankChange]]:
    """One publishing cycle's standing changes, its posts queued (so they count as pushed)."""
    snapshot = scoreboard.snapshot()
    seq, changes = scoreboard.rank_changes(lease, user_ids)
    scoreboard.published(lease, snapshot)
    return seq, changes


def test_standing_changes_are_reported_once_per_change_and_only_for_connected_players(scoreboard: Board) -> None:
    lease = str(scoreboard.set_totals([total("ann", 30), total("bob", 20), total("cid", 10)]).lease)

    _, not_queued = scoreboard.rank_changes(lease, ["ann", "bob", "cid"])  # a cycle that failed before queuing
    _, first = told(scoreboard, lease, ["ann", "bob", "cid", "nobody-with-a-score", "ann"])
    _, unchanged = told(scoreboard, lease, ["ann", "bob", "cid"])
    lease = str(scoreboard.set_totals([total("cid", 40, version=2)]).lease)  # the lease was free: a new publisher
    version = scoreboard.snapshot().seq
    seq, passed = told(scoreboard, lease, ["ann", "bob", "cid"])
    # The leader pulls away: a new score, the same rank.
    lease = str(scoreboard.set_totals([total("cid", 45, version=3)]).lease)
    _, pulled_away = told(scoreboard, lease, ["ann", "bob", "cid"])
    told(scoreboard, lease, ["ann"])  # bob and cid disconnected: forgotten
    _, back = told(scoreboard, lease, ["ann", "bob"])

    assert first == not_queued  # reported again: the failed cycle's were never pushed
    assert [(c.standing.user_id, c.standing.rank, c.previous_rank) for c in first] == [
        ("ann", 1, None),
        ("bob", 2, None),
        ("cid", 3, None),
    ]
    assert unchanged == []
    assert seq == version  # the version the changes were read at
    assert {(c.standing.user_id, c.standing.rank, c.standing.score, c.previous_rank) for c in passed} == {
        ("ann", 2, 30, 1),
        ("bob", 3, 20, 2),
        ("cid", 1, 40, 3),
    }
    assert [(c.standing.user_id, c.standing.rank, c.standing.score, c.previous_rank) for c in pulled_away] == [
        ("cid", 1, 45, 1)
    ]
    assert [(c.standing.user_id, c.previous_rank) for c in back] == [("bob", None)]


def test_only_the_lease_holder_records_standings(scoreboard: Board) -> None:
    scoreboard.set_totals([total("ann", 30)])
    redis.Redis.from_url(REDIS_URL).delete(scoreboard.keys[5])  # the lease expired
    fresh = str(scoreboard.set_totals([total("bob", 20)]).lease)

    with pytest.raises(LeaseLost):
        scoreboard.rank_changes("an-expired-lease", ["ann", "bob"])
    _, changes = scoreboard.rank_changes(fresh, ["ann", "bob"])

    assert len(changes) == 2  # the stale publisher recorded nothing


def test_an_expired_lease_is_taken_again_when_changes_are_still_unpublished(scoreboard: Board) -> None:
    lease = str(scoreboard.set_totals([total("ann", 10)]).lease)
    seen = scoreboard.snapshot()
    scoreboard.set_totals([total("bob", 20)])  # woke nobody: the lease was held
    redis.Redis.from_url(REDIS_URL).delete(scoreboard.keys[5])  # then the lease expired mid-cycle

    assert scoreboard.published(lease, seen) is True  # so the publisher takes it again and goes on
    assert scoreboard.set_totals([total("cid", 30)]).lease is None


def test_the_safety_net_claims_the_lease_only_for_an_unpublished_change(scoreboard: Board) -> None:
    lease = str(scoreboard.set_totals([total("ann", 10)]).lease)
    assert scoreboard.claim() is None  # held
    scoreboard.abandon(lease)  # its wake-up was lost
    claimed = scoreboard.claim()
    assert claimed is not None
    assert scoreboard.published(claimed, scoreboard.snapshot()) is False
    assert scoreboard.claim() is None  # published: nothing to do


@pytest.mark.parametrize("name", ["Ann", "A" * 32, "🏆" * 32, '"' * 32, "\uffff" * 32])
def test_chunks_keep_every_delivery_and_ten_fit_one_sqs_batch(name: str) -> None:
    standing = board.Standing(user_id="u" * 32, user_name=name, rank=1, score=10**15)
    top10 = messages.encode({"type": "top10", "seq": 1, "items": [standing.body()] * 10})
    many = [f"conn-{index:011d}=" for index in range(1, 601)]
    ranks = [
        (messages.rank_message(board.RankChange(standing, 2), index), [f"rank-{index:09d}="]) for index in range(600)
    ]

    chunks = list(live._chunks([(top10, many), *ranks]))

    deliveries = [(data, to) for chunk in chunks for data, recipients in chunk.posts for to in recipients]
    assert deliveries == [(top10, to) for to in many] + [(data, to[0]) for data, to in ranks]
    assert all(sum(len(to) for _, to in chunk.posts) <= live.POSTS_PER_CHUNK for chunk in chunks)
    sizes = [len(chunk.body().encode()) for chunk in chunks]
    assert max(sizes) <= live.BYTES_PER_CHUNK
    assert 10 * max(sizes) <= 256 * 1024  # SendMessageBatch's limit, ten chunks at a time
    assert [live.Chunk.from_body(chunk.body()) for chunk in chunks] == chunks
    assert all(chunk.body().isascii() for chunk in chunks)  # SQS refuses some characters a name may hold


# --- the WebSocket handlers, the publisher and the fan-out (moto) ---------------------------------------------------

ENDPOINT = "https://abcdef1234.execute-api.us-east-1.amazonaws.com/live"


class Live:
    """Drives the live functions as API Gateway and the two queues' event sources would."""

    def __init__(self, game: Game) -> None:
        self.game = game
        self.sqs = game.stack.sqs
        self.wake_ups_url = game.stack.physical_id("BoardChangesQueue")
        self.fanout_url = game.stack.physical_id("FanoutQueue")

    def connect(self, player: Identity) -> str:
        event = load_event("open_connection")
        connection_id = uuid.uuid4().hex[:14] + "=="
        event["requestContext"] |= {"connectionId": connection_id, "authorizer": player.as_context()}
        assert open_connection.lambda_handler(event, FakeLambdaContext()) == {"statusCode": 200}
        return connection_id

    def disconnect(self, connection_id: str) -> None:
        event = load_event("close_connection")
        event["requestContext"]["connectionId"] = connection_id
        assert close_connection.lambda_handler(event, FakeLambdaContext()) == {"statusCode": 200}

    def connections(self) -> set[str]:
        return {item["connection_id"]["S"] for item in self.game.stack.items("ConnectionsTable")}

    def take(self, queue_url: str) -> list[dict[str, Any]]:
        messages = []
        while batch := self.sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", []):
            for message in batch:
                self.sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
            messages += batch
        return messages

    def publish(self) -> int:
        """Run the publisher on each wake-up waiting, then post every chunk it queued; the number of wake-ups."""
        wake_ups = self.take(self.wake_ups_url)
        for wake_up in wake_ups:
            event = load_event("publish_board")
            event["Records"][0]["body"] = wake_up["Body"]
            publish_board.lambda_handler(event, FakeLambdaContext())
        for chunk in self.take(self.fanout_url):
            event = load_event("post_to_connections")
            event["Records"][0]["body"] = chunk["Body"]
            post_to_connections.lambda_handler(event, FakeLambdaContext())
        return len(wake_ups)

    def run_safety_net(self) -> None:
        publish_board.lambda_handler(load_event("publish_board_scheduled"), FakeLambdaContext())
        for chunk in self.take(self.fanout_url):
            event = load_event("post_to_connections")
            event["Records"][0]["body"] = chunk["Body"]
            post_to_connections.lambda_handler(event, FakeLambdaContext())

    def tops(self, connection_id: str) -> list[dict[str, Any]]:
        return [message for message in self.received(connection_id) if message["type"] == "top10"]

    def received(self, connection_id: str) -> list[dict[str, Any]]:
        """Every message posted to the connection so far (moto keeps the posts' bytes end to end)."""
        backend = apigatewaymanagementapi_backends["123456789012"]["us-east-1"]
        data = backend.connections[quote(connection_id, safe="")].data.decode()  # moto keys them as in the URL
        messages, decoder, position = [], json.JSONDecoder(), 0
        while position < len(data):
            message, position = decoder.raw_decode(data, position)
            messages.append(message)
        return messages


@pytest.fixture
def game_live(game: Game) -> Iterator[Live]:
    aws.connections_api.cache_clear()
    with mock.patch.dict(os.environ, {"CONNECTIONS_ENDPOINT": ENDPOINT}):
        yield Live(game)
    aws.connections_api.cache_clear()


def test_a_connection_is_recorded_with_its_player_and_a_two_hour_ttl(game_live: Live) -> None:
    ann = game_live.game.player("ann")

    connection_id = game_live.connect(ann)

    (item,) = game_live.game.stack.items("ConnectionsTable")
    assert item["connection_id"]["S"] == connection_id
    assert item["user_id"]["S"] == ann.user_id
    assert int(item["expires_at"]["N"]) - int(item["connected_at"]["N"]) == 2 * 60 * 60
    game_live.disconnect(connection_id)
    assert game_live.connections() == set()


def test_a_score_reaches_every_connection_and_the_players_rank_their_own(game_live: Live) -> None:
    game = game_live.game
    ann, bob = game.player("ann"), game.player("bob")
    ann_phone, ann_laptop, bob_phone = game_live.connect(ann), game_live.connect(ann), game_live.connect(bob)

    game.score(ann, 300)
    game.drain()
    assert game_live.publish() == 1
    game.score(bob, 500)
    game.drain()
    assert game_live.publish() == 1

    for connection_id in (ann_phone, ann_laptop):
        # A chunk's posts go out in parallel: a cycle's top 10 and rank may arrive in either order (same seq).
        received = game_live.received(connection_id)
        first_top, second_top = [message for message in received if message["type"] == "top10"]
        first_rank, passed = [message for message in received if message["type"] == "rank"]
        assert first_top == {"type": "top10", "seq": first_top["seq"], "items": [game.top()[1] | {"rank": 1}]}
        assert first_rank == {
            "type": "rank",
            "seq": first_top["seq"],
            "user_id": ann.user_id,
            "user_name": "Ann",
            "rank": 1,
            "score": 300,
            "previous_rank": None,
        }
        assert second_top == {"type": "top10", "seq": second_top["seq"], "items": game.top()}
        assert second_top["seq"] > first_top["seq"]
        assert (passed["seq"], passed["rank"], passed["previous_rank"]) == (second_top["seq"], 2, 1)
    bob_messages = game_live.received(bob_phone)
    assert sorted(message["type"] for message in bob_messages) == ["rank", "top10", "top10"]
    (bob_rank,) = [message for message in bob_messages if message["type"] == "rank"]
    assert (bob_rank["user_id"], bob_rank["rank"]) == (bob.user_id, 1)


def test_many_batches_wake_one_publisher_and_it_publishes_the_last_board(game_live: Live) -> None:
    game = game_live.game
    connection_id = game_live.connect(game.player("watcher"))
    players = [game.player(f"p{index}") for index in range(5)]

    for points, player in enumerate(players, start=1):
        game.score(player, points * 100)
        game.drain()  # one consumer batch each

    assert game_live.publish() == 1
    (pushed,) = [message for message in game_live.received(connection_id) if message["type"] == "top10"]
    assert pushed["items"] == game.top()
    assert len(pushed["items"]) == 5


def gone_for(client: Any, *gone: str) -> Any:
    """post_to_connection answering 410 (botocore's own GoneException) for these connections."""
    real_post = client.post_to_connection

    def post(**kwargs: Any) -> Any:
        if kwargs["ConnectionId"] in gone:
            error = {"Error": {"Code": "GoneException", "Message": ""}, "ResponseMetadata": {"HTTPStatusCode": 410}}
            raise client.exceptions.GoneException(error, "PostToConnection")
        return real_post(**kwargs)

    return mock.patch.object(client, "post_to_connection", side_effect=post)


def test_a_stale_connection_is_removed_on_410_and_the_others_still_get_the_board(
    game_live: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    game = game_live.game
    ann = game.player("ann")
    alive, stale = game_live.connect(ann), game_live.connect(ann)
    monkeypatch.setattr(connections, "HANDSHAKE_SECONDS", -60)  # both were opened long ago

    with gone_for(aws.connections_api(live.PARALLEL_POSTS), stale):
        game.score(ann, 100)
        game.drain()
        game_live.publish()

    assert game_live.connections() == {alive}
    assert sorted(message["type"] for message in game_live.received(alive)) == ["rank", "top10"]


def test_a_connection_still_in_its_handshake_is_kept_on_410(game_live: Live) -> None:
    game = game_live.game
    ann = game.player("ann")
    opening = game_live.connect(ann)  # recorded by $connect a moment ago; API Gateway answers 410 until it is open

    with gone_for(aws.connections_api(live.PARALLEL_POSTS), opening):
        game.score(ann, 100)
        game.drain()
        game_live.publish()

    assert game_live.connections() == {opening}


def test_the_consumer_never_waits_on_fan_out_and_a_failed_wake_up_only_defers_publishing(
    game_live: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    game = game_live.game
    watcher = game_live.connect(game.player("watcher"))
    ann = game.player("ann")
    game.score(ann, 100)
    with monkeypatch.context() as patch:
        patch.setattr(live, "_send_wake_up", lambda lease: aws.sqs().send_message(QueueUrl="https://nowhere"))
        assert game.deliver(game.receive())["batchItemFailures"] == []  # the scores are applied all the same

    assert game.top()[0]["score"] == 100
    assert game_live.publish() == 0  # nothing woke; the lease was given back...
    game.score(ann, 50)
    game.drain()
    assert game_live.publish() == 1  # ...so the next change wakes a publisher, with the whole board
    (pushed,) = [message for message in game_live.received(watcher) if message["type"] == "top10"]
    assert pushed["items"][0]["score"] == 150


def test_a_player_whose_connections_span_scan_pages_is_told_on_all_of_them_once(
    game_live: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    game = game_live.game
    ann, bob = game.player("ann"), game.player("bob")
    ann_first, bob_phone, ann_second = game_live.connect(ann), game_live.connect(bob), game_live.connect(ann)
    real_pages = connections.open_connections

    def one_per_page() -> Any:  # as DynamoDB pages a large table
        for page in real_pages():
            for connection in sorted(page, key=lambda connection: connection.connection_id):
                yield [connection]

    monkeypatch.setattr(connections, "open_connections", one_per_page)
    game.score(ann, 100)
    game.drain()
    game_live.publish()
    game.score(bob, 50)  # bob's standing changes, ann's does not
    game.drain()
    game_live.publish()

    for connection_id in (ann_first, ann_second):
        ranks = [message for message in game_live.received(connection_id) if message["type"] == "rank"]
        assert [(message["rank"], message["score"]) for message in ranks] == [(1, 100)]
    assert [message["rank"] for message in game_live.received(bob_phone) if message["type"] == "rank"] == [2]


def test_a_publisher_near_its_deadline_hands_over_with_its_lease(
    game_live: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    game = game_live.game
    watcher = game_live.connect(game.player("watcher"))
    ann, bob = game.player("ann"), game.player("bob")
    game.score(ann, 100)
    game.drain()
    (wake_up,) = game_live.take(game_live.wake_ups_url)
    lease = live.lease_of(wake_up["Body"])
    real_queue = live._queue

    def queue_then_a_score_arrives(chunks: Any) -> None:
        real_queue(chunks)
        monkeypatch.setattr(live, "_queue", real_queue)
        game.score(bob, 300)
        game.drain()  # applied while the lease is held: no wake-up of its own

    monkeypatch.setattr(live, "_queue", queue_then_a_score_arrives)
    assert live.publish_changes(board.board(), lease, lambda: 1_000) == 1

    (hand_over,) = game_live.take(game_live.wake_ups_url)
    assert live.lease_of(hand_over["Body"]) != lease  # the publisher's own token, adopted at its start...
    assert live.publish_changes(board.board(), lease, lambda: 10_000) == 0  # ...so a stale copy of the wake-up stops
    event = load_event("publish_board")
    event["Records"][0]["body"] = hand_over["Body"]
    publish_board.lambda_handler(event, FakeLambdaContext())
    game_live.publish()
    assert game_live.tops(watcher)[-1]["items"] == game.top()


def test_a_failed_cycle_gives_the_lease_back(game_live: Live, monkeypatch: pytest.MonkeyPatch) -> None:
    game = game_live.game
    game.score(game.player("ann"), 100)
    game.drain()
    (wake_up,) = game_live.take(game_live.wake_ups_url)

    def sqs_refuses(chunks: Any) -> None:
        list(chunks)
        raise RuntimeError("FanoutQueue refused 1 chunks")

    monkeypatch.setattr(live, "_queue", sqs_refuses)
    with pytest.raises(RuntimeError):
        live.publish_changes(board.board(), live.lease_of(wake_up["Body"]), lambda: 10_000)

    assert board.board().claim() is not None  # free again, and the change still unpublished


def test_a_failed_cycle_is_redone_whole_rank_messages_included(
    game_live: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    game = game_live.game
    ann = game.player("ann")
    phone = game_live.connect(ann)
    game.score(ann, 100)
    game.drain()
    (wake_up,) = game_live.take(game_live.wake_ups_url)
    real_queue = live._queue

    def sqs_refuses(chunks: Any) -> None:
        list(chunks)  # the cycle is built, standings read...
        raise RuntimeError("FanoutQueue refused 1 chunks")  # ...and nothing is queued

    monkeypatch.setattr(live, "_queue", sqs_refuses)
    with pytest.raises(RuntimeError):
        live.publish_changes(board.board(), live.lease_of(wake_up["Body"]), lambda: 10_000)
    monkeypatch.setattr(live, "_queue", real_queue)
    game_live.run_safety_net()

    assert sorted(message["type"] for message in game_live.received(phone)) == ["rank", "top10"]


def test_a_lost_wake_up_is_covered_by_the_safety_net(game_live: Live, monkeypatch: pytest.MonkeyPatch) -> None:
    game = game_live.game
    watcher = game_live.connect(game.player("watcher"))
    game_live.run_safety_net()
    assert game_live.received(watcher) == []  # nothing changed: nothing to do
    game.score(game.player("ann"), 100)
    game.drain()
    game_live.take(game_live.wake_ups_url)  # the wake-up is lost...
    board.board().abandon(
        board.board().snapshot() and redis.Redis.from_url(REDIS_URL).get(board.board().keys[5]).decode()
    )

    game_live.run_safety_net()  # ...and the schedule publishes the change

    assert game_live.tops(watcher)[-1]["items"] == game.top()


def test_a_duplicated_wake_up_posts_nothing_twice(game_live: Live) -> None:
    game = game_live.game
    watcher = game_live.connect(game.player("watcher"))
    game.score(game.player("ann"), 100)
    game.drain()
    (wake_up,) = game_live.take(game_live.wake_ups_url)

    for _ in range(2):  # SQS delivers at least once
        game_live.sqs.send_message(QueueUrl=game_live.wake_ups_url, MessageBody=wake_up["Body"])
        game_live.publish()

    assert len(game_live.tops(watcher)) == 1


def test_a_rebuilt_board_is_pushed_like_any_change(game_live: Live) -> None:
    game = game_live.game
    watcher = game_live.connect(game.player("watcher"))
    game.score(game.player("ann"), 100)
    game.drain()
    game_live.publish()
    redis.Redis.from_url(REDIS_URL).delete(*board.board().keys)  # Redis came back empty

    rebuild_board.lambda_handler(load_event("rebuild_board"), FakeLambdaContext())
    game_live.publish()

    first, rebuilt = game_live.tops(watcher)
    assert rebuilt["items"] == first["items"] == game.top()
    assert rebuilt["seq"] > first["seq"]


def test_the_consumer_queues_no_post_itself(game_live: Live) -> None:
    game = game_live.game
    for index in range(3):
        game_live.connect(game.player(f"watcher{index}"))
    game.score(game.player("ann"), 100)

    game.drain()

    assert len(game_live.take(game_live.wake_ups_url)) == 1  # one small message; the posts are the publisher's
    assert game_live.take(game_live.fanout_url) == []


def test_top10_answers_the_sender_with_the_board_and_its_version(game_live: Live) -> None:
    game = game_live.game
    game.score(game.player("ann"), 100)
    game.drain()

    answer = send_top10.lambda_handler(load_event("send_top10"), FakeLambdaContext())

    assert answer["statusCode"] == 200
    body = json.loads(answer["body"])
    assert body == {"type": "top10", "seq": board.board().snapshot().seq, "items": game.top()}


def test_top10_while_redis_is_down_answers_a_problem_not_a_crash(game_live: Live) -> None:
    with mock.patch.dict(os.environ, {"REDIS_URL": "redis://127.0.0.1:1/0"}):
        answer = send_top10.lambda_handler(load_event("send_top10"), FakeLambdaContext())

    body = json.loads(answer["body"])
    assert body["type"] == "error"
    assert body["problem"]["status"] == 503


# --- the $connect authorizer ----------------------------------------------------------------------------------------


def test_a_valid_token_is_allowed_with_the_players_identity(game: Game) -> None:
    from leaderboard import signing_keys, tokens
    from leaderboard.config import settings

    ann = game.player("ann")
    token = tokens.issue_access_token(
        ann, signing_keys.keys.current(), issuer=settings.jwt_issuer, audience=settings.jwt_audience
    )
    event = load_event("authorize_connection_garbage")
    event["queryStringParameters"] = {"token": token}

    answer = authorize_connection.lambda_handler(event, FakeLambdaContext())

    assert answer["principalId"] == ann.user_id
    assert answer["policyDocument"]["Statement"] == [
        {"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": event["methodArn"]}
    ]
    assert answer["context"] == ann.as_context()


@pytest.mark.parametrize("case", ["authorize_connection_garbage", "authorize_connection_forged"])
def test_a_bad_token_is_denied(game: Game, case: str) -> None:
    event = load_event(case)

    answer = authorize_connection.lambda_handler(event, FakeLambdaContext())

    assert answer["policyDocument"]["Statement"][0]["Effect"] == "Deny"
    assert "context" not in answer


def test_no_token_at_all_is_denied(game: Game) -> None:
    event = load_event("authorize_connection_garbage")
    event["queryStringParameters"] = None

    answer = authorize_connection.lambda_handler(event, FakeLambdaContext())

    assert answer["policyDocument"]["Statement"][0]["Effect"] == "Deny"
