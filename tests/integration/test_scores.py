"""Actions, scores, the consumer and the board, in-process: real handlers, moto (DynamoDB, SQS from the
template) and the real Redis. Every test gets a board of its own."""

import json
import os
import threading
import uuid
from typing import Any
from unittest import mock

import botocore.client
import botocore.exceptions
import pytest

from functions.scores import apply_scores, get_top10, rebuild_board
from leaderboard import aws, board, board_sync, scores
from tests.conftest import FakeLambdaContext, load_event
from tests.integration.conftest import Game


def sqs_unreachable(**kwargs: Any) -> None:
    raise ConnectionError("SQS is unreachable")


# --- actions -------------------------------------------------------------------------------------------------------


def test_an_action_is_recorded_for_its_player(game: Game) -> None:
    alice = game.player("alice")

    status, body = game.start(alice, {"type": "match"})

    assert status == 201
    assert set(body) == {"action_id", "type", "max_score", "expires_at", "scorable_at"}
    assert (body["type"], body["max_score"]) == ("match", 1000)
    assert body["expires_at"].endswith("Z")
    assert body["scorable_at"].endswith("Z")
    # Open on the player's item until it is scored; nothing in the ledger of scored actions yet.
    [item] = [item for item in game.stack.items("PlayerTotalsTable") if item["user_id"]["S"] == alice.user_id]
    assert item["open:match"]["SS"] == [body["action_id"]]
    assert game.stack.items("ActionsTable") == []


def test_the_action_type_defaults_to_match(game: Game) -> None:
    assert game.start(game.player("alice"))[1]["type"] == "match"
    assert game.start(game.player("alice"), {})[1]["type"] == "match"


@pytest.mark.parametrize(("body", "status"), [({"type": "raid"}, 422), ({"type": 7}, 400), ({"kind": "match"}, 400)])
def test_bad_action_requests(game: Game, body: dict[str, Any], status: int) -> None:
    assert game.start(game.player("alice"), body)[0] == status


# --- posting scores ------------------------------------------------------------------------------------------------


def test_a_score_is_in_the_ledger_before_202_and_its_change_queued(game: Game) -> None:
    alice = game.player("alice")
    action_id = game.action(alice)

    status, body = game.post(alice, {"user_id": alice.user_id, "score": 250, "action_id": action_id})

    assert (status, body) == (
        202,
        {"action_id": action_id, "user_id": alice.user_id, "score": 250, "status": "accepted"},
    )
    assert game.total(alice) == 250
    [message] = game.receive()
    change = scores.PlayerChanged.parse(message["Body"])
    assert (change.user_id, change.rev) == (alice.user_id, 1)
    assert sorted(board_id for board_id, _ in change.seasons) == ["daily-best", "global", "weekly"]
    assert all(game.total(alice, "/".join(key)) == 250 for key in change.seasons)
    assert game.stack.items("ActionsTable") == [], "a player's own score needs no record of its own"


def test_the_contract_answers(game: Game) -> None:
    alice, bob = game.player("alice"), game.player("bob")
    mine, theirs = game.action(alice), game.action(bob)

    def post(body: dict[str, Any]) -> int:
        return game.post(alice, {"user_id": alice.user_id, "score": 10, "action_id": mine, **body})[0]

    assert post({"user_id": bob.user_id}) == 403
    assert post({"action_id": "no-such-action"}) == 404
    assert post({"action_id": theirs}) == 404
    assert post({"score": 0}) == 422
    assert post({"score": -5}) == 422
    assert post({"score": 1001}) == 422
    assert post({"score": 1000}) == 202
    assert post({"score": 10}) == 409


@pytest.mark.parametrize(
    "raw",
    [
        '{"user_id": "U", "score": 1.5, "action_id": "A"}',
        '{"user_id": "U", "score": 10.0, "action_id": "A"}',
        '{"user_id": "U", "score": "10", "action_id": "A"}',
        '{"user_id": "U", "score": true, "action_id": "A"}',
        '{"user_id": "U", "score": null, "action_id": "A"}',
        '{"user_id": "U", "score": NaN, "action_id": "A"}',
        '{"user_id": "U", "score": Infinity, "action_id": "A"}',
        '{"user_id": "U", "score": 1e400, "action_id": "A"}',
        '{"user_id": "U", "score": 9007199254740993, "action_id": "A"}',
        '{"user_id": "U", "score": 123456789012345678901234567890, "action_id": "A"}',
        '{"user_id": "U", "action_id": "A"}',
        '{"user_id": "U", "score": 10, "action_id": "A", "bonus": 5}',
        '{"user_id": 1, "score": 10, "action_id": "A"}',
        "[10]",
        "not json",
    ],
)
def test_wrong_types_are_400_and_change_nothing(game: Game, raw: str) -> None:
    alice = game.player("alice")
    action_id = game.action(alice)

    status, body = game.post(alice, raw.replace('"U"', f'"{alice.user_id}"').replace('"A"', f'"{action_id}"'))

    assert (status, body["status"]) == (400, 400)
    assert game.receive() == []
    assert game.post(alice, {"user_id": alice.user_id, "score": 5, "action_id": action_id})[0] == 202


def test_the_first_applicable_error_wins(game: Game) -> None:
    alice, bob = game.player("alice"), game.player("bob")
    mine = game.action(alice)

    assert game.post(alice, {"user_id": bob.user_id, "score": 1.5, "action_id": "nope"})[0] == 400
    assert game.post(alice, {"user_id": bob.user_id, "score": 5000, "action_id": "nope"})[0] == 403
    assert game.post(alice, {"user_id": alice.user_id, "score": 5000, "action_id": "nope"})[0] == 404
    assert game.post(alice, {"user_id": alice.user_id, "score": 1, "action_id": mine})[0] == 202
    assert game.post(alice, {"user_id": alice.user_id, "score": 5000, "action_id": mine})[0] == 409


def test_a_score_that_would_pass_the_cap_is_422(game: Game) -> None:
    alice = game.player("alice")
    game.stack.dynamodb.put_item(
        TableName=game.stack.physical_id("PlayerTotalsTable"),
        Item={
            "user_id": {"S": alice.user_id},
            "accepted_total": {"N": str(scores.MAX_TOTAL - 5)},
            "seasons": {"M": {"global/all": {"L": [{"N": str(scores.MAX_TOTAL - 5)}, {"N": "1"}]}}},
            "rev": {"N": "1"},
            "display_name": {"S": "Alice"},
        },
    )
    action_id = game.action(alice)

    assert game.post(alice, {"user_id": alice.user_id, "score": 6, "action_id": action_id})[0] == 422
    assert game.post(alice, {"user_id": alice.user_id, "score": 5, "action_id": action_id})[0] == 202


def test_an_idempotency_key_replays_the_first_answer(game: Game) -> None:
    alice = game.player("alice")
    action_id = game.action(alice)
    body = {"user_id": alice.user_id, "score": 42, "action_id": action_id}

    first = game.post(alice, body, key="k-1")
    again = game.post(alice, body, key="k-1")
    other_body = game.post(alice, {**body, "score": 43}, key="k-1")
    no_key = game.post(alice, body)

    assert first == again
    assert first[0] == 202
    assert other_body[0] == 422
    assert no_key[0] == 409
    assert len(game.receive()) == 1, "one message: one increment"


def test_a_keyed_score_costs_as_many_requests_as_an_unkeyed_one(game: Game) -> None:
    alice = game.player("alice")
    plain, keyed = game.action(alice), game.action(alice)
    requests: list[str] = []
    real_call = botocore.client.BaseClient._make_api_call

    def counted(client: Any, operation: str, params: Any) -> Any:
        requests.append(operation)
        return real_call(client, operation, params)

    with mock.patch.object(botocore.client.BaseClient, "_make_api_call", counted):
        assert game.post(alice, {"user_id": alice.user_id, "score": 1, "action_id": plain})[0] == 202
        unkeyed, requests[:] = list(requests), []
        assert game.post(alice, {"user_id": alice.user_id, "score": 1, "action_id": keyed}, key="k")[0] == 202

    assert unkeyed == ["GetItem", "SendMessage", "UpdateItem"]
    assert requests == ["BatchGetItem", "SendMessage", "TransactWriteItems"], "the key is read and written with it"


@pytest.mark.parametrize("key", ["", "x" * 256, "caf\u00e9", "line\nbreak"])
def test_an_unusable_idempotency_key_is_400_and_changes_nothing(game: Game, key: str) -> None:
    alice = game.player("alice")
    action_id = game.action(alice)

    status, problem = game.post(alice, {"user_id": alice.user_id, "score": 5, "action_id": action_id}, key=key)

    assert (status, problem["status"]) == (400, 400)
    assert "Idempotency-Key" in problem["detail"]
    assert game.receive() == []
    assert game.total(alice) == 0


def test_an_idempotency_key_answers_first_even_for_an_unknown_action(game: Game) -> None:
    alice = game.player("alice")
    action_id = game.action(alice)
    assert game.post(alice, {"user_id": alice.user_id, "score": 5, "action_id": action_id}, key="k-1")[0] == 202

    assert game.post(alice, {"user_id": alice.user_id, "score": 5, "action_id": "nope"}, key="k-1")[0] == 422
    assert game.post(alice, {"user_id": alice.user_id, "score": 5, "action_id": "nope"}, key="k-2")[0] == 404


def test_idempotency_keys_are_per_player(game: Game) -> None:
    alice, bob = game.player("alice"), game.player("bob")
    alice_action, bob_action = game.action(alice), game.action(bob)

    assert game.post(alice, {"user_id": alice.user_id, "score": 1, "action_id": alice_action}, key="same")[0] == 202
    assert game.post(bob, {"user_id": bob.user_id, "score": 2, "action_id": bob_action}, key="same")[0] == 202


# --- the consumer --------------------------------------------------------------------------------------------------


def test_scores_reach_the_board_exactly(game: Game) -> None:
    alice, bob = game.player("alice"), game.player("bob")
    for points in (100, 250, 5):
        game.score(alice, points)
    game.score(bob, 300)

    game.drain()

    assert game.top() == [
        {"user_id": alice.user_id, "user_name": "Alice", "rank": 1, "score": 355},
        {"user_id": bob.user_id, "user_name": "Bob", "rank": 2, "score": 300},
    ]
    assert (game.total(alice), game.total(bob)) == (355, 300)


def test_a_redelivered_message_is_counted_once(game: Game) -> None:
    alice = game.player("alice")
    game.score(alice, 70)
    messages = game.receive(visibility_timeout=0)

    game.deliver(messages)
    game.deliver(messages)  # SQS delivers at least once
    game.drain()

    assert game.total(alice) == 70
    assert game.top()[0]["score"] == 70


def test_a_consumer_killed_between_its_writes_converges(game: Game, monkeypatch: pytest.MonkeyPatch) -> None:
    alice = game.player("alice")
    game.score(alice, 40)
    game.drain()
    game.score(alice, 2)
    messages = game.receive(visibility_timeout=0)

    def die(self: board.Board, totals: Any, live: bool = True) -> None:
        raise SystemExit("killed before its write to Redis")

    with monkeypatch.context() as patch:
        patch.setattr(board.Board, "set_totals", die)
        with pytest.raises(SystemExit):
            game.deliver(messages)
    assert game.total(alice) == 42, "committed once"
    assert game.top()[0]["score"] == 40, "the board missed it"

    game.deliver(messages)  # the redelivery

    assert game.total(alice) == 42
    assert game.top()[0]["score"] == 42


def test_a_poison_message_fails_alone_and_reaches_the_dead_letter_queue(game: Game) -> None:
    alice = game.player("alice")
    game.score(alice, 10)
    game.stack.sqs.send_message(QueueUrl=game.queue_url, MessageBody='{"not": "a change"}')
    game.score(alice, 20)

    receives = 0
    while messages := game.receive(visibility_timeout=0):
        result = game.deliver(messages)
        receives += 1
        assert len(result["batchItemFailures"]) == 1
        assert receives <= 10

    assert game.total(alice) == 30
    dead = game.stack.sqs.receive_message(QueueUrl=game.dead_letter_url, MaxNumberOfMessages=10)["Messages"]
    assert [message["Body"] for message in dead] == ['{"not": "a change"}']


def test_redis_down_fails_the_batch_and_nothing_is_lost(game: Game) -> None:
    alice = game.player("alice")
    game.score(alice, 15)
    messages = game.receive(visibility_timeout=0)

    with mock.patch.dict(os.environ, {"REDIS_URL": "redis://127.0.0.1:1/0"}), pytest.raises(board.BoardUnavailable):
        game.deliver(messages)  # nothing listens on port 1
    assert game.total(alice) == 15, "the ledger was written when the score was accepted"
    assert len(game.receive(visibility_timeout=0)) == 1, "the message waits in the queue"

    game.drain()  # Redis is back: the redelivery is already counted, and reaches the board
    assert game.total(alice) == 15
    assert game.top()[0]["score"] == 15


def test_reads_answer_503_while_redis_is_down(game: Game) -> None:
    with mock.patch.dict(os.environ, {"REDIS_URL": "redis://127.0.0.1:1/0"}):
        response = get_top10.lambda_handler(load_event("get_top10"), FakeLambdaContext())
    assert response["statusCode"] == 503
    assert response["headers"]["Retry-After"] == "1"


def test_changes_delivered_out_of_order_leave_the_board_at_the_ledger(game: Game) -> None:
    alice = game.player("alice")
    game.score(alice, 1)
    game.score(alice, 2)
    first, second = sorted(game.receive(), key=lambda message: json.loads(message["Body"])["rev"])

    game.deliver([second])
    game.deliver([first])

    item = game.stack.dynamodb.get_item(
        TableName=game.stack.physical_id("PlayerTotalsTable"), Key={"user_id": {"S": alice.user_id}}
    )["Item"]
    points, reached_at = item["seasons"]["M"]["global/all"]["L"]
    assert points["N"] == "3"
    assert reached_at["N"] == str(json.loads(second["Body"])["sent_at_ms"]), "reached when the second was accepted"
    assert game.top()[0]["score"] == 3


# --- the board and its reads ---------------------------------------------------------------------------------------


def test_ties_go_to_whoever_reached_the_score_first(game: Game) -> None:
    early, late, leader = game.player("early"), game.player("late"), game.player("leader")
    game.score(early, 500)
    game.score(late, 500)
    game.score(leader, 900)
    game.drain()

    ranks = [(entry["user_name"], entry["rank"]) for entry in game.top()]

    assert ranks == [("Leader", 1), ("Early", 2), ("Late", 3)]


def test_top10_holds_ten_and_standings_show_neighbours(game: Game) -> None:
    players = [game.player(f"p{index:02d}") for index in range(15)]
    for index, player in enumerate(players):
        game.score(player, 10 * (index + 1))
    game.drain()

    top = game.top()
    assert [entry["rank"] for entry in top] == list(range(1, 11))
    assert top[0]["score"] == 150

    status, middle = game.standing(players[7].user_id)  # 80 points: rank 8
    assert status == 200
    assert (middle["rank"], middle["score"], middle["user_name"]) == (8, 80, "P07")
    assert [entry["rank"] for entry in middle["around"]] == list(range(4, 13))
    assert middle["around"][4]["user_id"] == players[7].user_id

    leader = game.standing(players[14].user_id)[1]
    assert [entry["rank"] for entry in leader["around"]] == [1, 2, 3, 4, 5]


def test_a_player_without_a_score_is_404(game: Game) -> None:
    assert game.standing(uuid.uuid4().hex)[0] == 404
    assert game.standing("../../etc")[0] == 404


def test_an_empty_board_is_an_empty_list(game: Game) -> None:
    assert game.top() == []


# --- rebuild -------------------------------------------------------------------------------------------------------


def test_rebuild_restores_the_exact_board_after_redis_lost_it(game: Game) -> None:
    players = [game.player(f"r{index}") for index in range(12)]
    for index, player in enumerate(players):
        game.score(player, 7 * (index % 4) + 1)
    game.drain()
    before = game.top(), [game.standing(player.user_id) for player in players]
    client = game.redis
    client.delete(*client.scan_iter(match=f"{os.environ['REDIS_KEY_PREFIX']}:*"))
    assert game.top() == []

    result = rebuild_board.lambda_handler({}, FakeLambdaContext())

    assert sorted(result["players"].values()) == [12, 12, 12]  # all time, this week, today
    assert (game.top(), [game.standing(player.user_id) for player in players]) == before


def test_a_rebuild_counts_a_score_still_in_the_queue_once(game: Game) -> None:
    ann, bob = game.player("ann"), game.player("bob")
    game.score(ann, 100)
    game.drain()
    game.score(bob, 50)  # in the ledger; its change still in the queue

    rebuild_board.lambda_handler(load_event("rebuild_board"), FakeLambdaContext())

    assert [(entry["user_id"], entry["score"]) for entry in game.top()] == [(ann.user_id, 100), (bob.user_id, 50)]
    game.drain()
    assert [(entry["user_id"], entry["score"]) for entry in game.top()] == [(ann.user_id, 100), (bob.user_id, 50)]


def test_a_rebuild_racing_the_consumer_never_goes_back(game: Game) -> None:
    alice, bob = game.player("alice"), game.player("bob")
    game.score(alice, 10)
    game.score(bob, 20)
    game.drain()
    # The rebuild read...
    stale_snapshot = [player for key, player in board_sync.all_points() if key == ("global", "all")]
    game.score(alice, 100)  # ...scores keep arriving and are applied...
    game.drain()

    game.board().set_totals(stale_snapshot)  # ...then the rebuild writes what it read

    assert [(entry["user_id"], entry["score"]) for entry in game.top()] == [(alice.user_id, 110), (bob.user_id, 20)]
    assert game.total(alice) == 110


def test_when_sqs_refuses_nothing_is_recorded_and_a_retry_succeeds(game: Game, monkeypatch: pytest.MonkeyPatch) -> None:
    alice = game.player("alice")
    action_id = game.action(alice)
    body = {"user_id": alice.user_id, "score": 33, "action_id": action_id}

    with monkeypatch.context() as patch:
        patch.setattr(aws.sqs(), "send_message", sqs_unreachable)
        status, problem = game.post(alice, body)

    assert (status, problem["status"]) == (503, 503)
    assert "SQS" not in problem["detail"]
    assert game.post(alice, body)[0] == 202
    game.drain()
    assert game.total(alice) == 33


def test_a_request_that_dies_between_the_queue_and_its_write_leaves_a_message_the_consumer_drops(
    game: Game, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice = game.player("alice")
    action_id = game.action(alice)
    body = {"user_id": alice.user_id, "score": 77, "action_id": action_id}

    def crash(**kwargs: Any) -> None:
        raise SystemExit("the function died after SendMessage, before its write")

    with monkeypatch.context() as patch:
        patch.setattr(aws.dynamodb(), "update_item", crash)
        with pytest.raises(SystemExit):
            game.post(alice, body)
    [orphan] = game.receive(visibility_timeout=0)
    monkeypatch.setattr(board_sync, "_CATCH_UP_PAUSES", (0,))

    assert game.deliver([orphan])["batchItemFailures"] == [{"itemIdentifier": orphan["MessageId"]}], "not yet"
    sent_at_ms = scores.PlayerChanged.parse(orphan["Body"]).sent_at_ms
    with mock.patch.object(apply_scores, "time") as clock:
        clock.time.return_value = (sent_at_ms + scores.UNWRITTEN_AFTER_MS + 1) / 1000
        assert game.deliver(game.receive(visibility_timeout=0))["batchItemFailures"] == [], "dropped: never written"
    assert game.receive(visibility_timeout=0) == []
    assert game.total(alice) == 0

    assert game.post(alice, body)[0] == 202, "the action is still open: the player's retry scores it"
    game.drain()
    assert (game.total(alice), game.top()[0]["score"]) == (77, 77)


@pytest.mark.parametrize("operation", ["get_item", "update_item"])
def test_dynamodb_throttling_is_503_with_retry_after_and_a_retry_succeeds(
    game: Game, monkeypatch: pytest.MonkeyPatch, operation: str
) -> None:
    alice = game.player("alice")
    body = {"user_id": alice.user_id, "score": 9, "action_id": game.action(alice)}

    def throttled(**kwargs: Any) -> None:
        error = {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"}}
        raise botocore.exceptions.ClientError(error, "UpdateItem")  # type: ignore[arg-type]

    with monkeypatch.context() as patch:
        patch.setattr(aws.dynamodb(), operation, throttled)
        status, problem = game.post(alice, body)

    assert (status, problem["status"], game.last_headers["Retry-After"]) == (503, 503, "1")
    assert "Throughput" not in problem["detail"]
    assert game.total(alice) == 0
    assert game.post(alice, body)[0] == 202
    game.drain()
    assert game.total(alice) == 9


def test_a_write_whose_answer_was_lost_is_accepted_once(game: Game, monkeypatch: pytest.MonkeyPatch) -> None:
    alice = game.player("alice")
    body = {"user_id": alice.user_id, "score": 31, "action_id": game.action(alice)}
    real_update = aws.dynamodb().update_item
    calls = 0

    def applied_but_answer_lost(**kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        result = real_update(**kwargs)
        if calls == 1:  # as botocore retries a request whose answer timed out: the retry finds the item changed
            return real_update(**kwargs)
        return result

    with monkeypatch.context() as patch:
        patch.setattr(aws.dynamodb(), "update_item", applied_but_answer_lost)
        assert game.post(alice, body)[0] == 202

    game.drain()
    assert game.total(alice) == 31
    assert game.post(alice, body)[0] == 409, "scored once"


def test_concurrent_posts_for_one_player_are_each_counted_exactly_once(game: Game) -> None:
    alice = game.player("alice")
    actions = [game.action(alice) for _ in range(4)]
    posts = [(action_id, 10 + index) for index, action_id in enumerate(actions)] + [(actions[0], 10)]  # a double post
    answers: dict[int, int] = {}

    def post(index: int) -> None:
        action_id, score = posts[index]
        answers[index] = game.post(alice, {"user_id": alice.user_id, "score": score, "action_id": action_id})[0]

    threads = [threading.Thread(target=post, args=(index,)) for index in range(len(posts))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for index, status in sorted(answers.items()):  # a post that lost every race (503) is retried, as a client would
        if status == 503:
            post(index)

    assert [answers[index] for index in (1, 2, 3)] == [202] * 3
    # The double post and its twin: one wrote it (202); the other is answered as its twin, or as already scored.
    assert sorted([answers[0], answers[4]]) in ([202, 202], [202, 409])
    game.drain()
    assert (game.total(alice), game.top()[0]["score"]) == (10 + 11 + 12 + 13,) * 2


def test_rebuilds_running_while_scores_arrive_converge_to_the_ledger(game: Game) -> None:
    players = [game.player(f"c{index}") for index in range(5)]
    expected = dict.fromkeys((player.user_id for player in players), 0)
    stop = threading.Event()
    rebuilds = 0

    def keep_rebuilding() -> None:
        nonlocal rebuilds
        while not stop.is_set():
            rebuild_board.lambda_handler({}, FakeLambdaContext())
            rebuilds += 1

    rebuilder = threading.Thread(target=keep_rebuilding)
    rebuilder.start()
    try:
        for round_ in range(4):
            for index, player in enumerate(players):
                points = 10 * index + round_ + 1
                game.score(player, points)
                expected[player.user_id] += points
            game.drain()
    finally:
        stop.set()
        rebuilder.join()

    assert rebuilds > 0
    assert {entry["user_id"]: entry["score"] for entry in game.top()} == expected
    assert all(game.total(player) == expected[player.user_id] for player in players)
    # Every board the scores feed converged too: this week's sums, today's best single scores (10 * index + 4).
    assert {s.user_id: s.score for s in game.board("weekly").page(0, 100)} == expected
    assert {s.user_id: s.score for s in game.board("daily-best").page(0, 100)} == {
        player.user_id: 10 * index + 4 for index, player in enumerate(players)
    }


def test_scores_count_against_the_cap_as_soon_as_accepted(game: Game) -> None:
    alice = game.player("alice")
    game.stack.dynamodb.put_item(
        TableName=game.stack.physical_id("PlayerTotalsTable"),
        Item={"user_id": {"S": alice.user_id}, "accepted_total": {"N": str(scores.MAX_TOTAL - 5)}},
    )
    first, second = game.action(alice), game.action(alice)

    assert game.post(alice, {"user_id": alice.user_id, "score": 5, "action_id": first})[0] == 202
    assert game.post(alice, {"user_id": alice.user_id, "score": 5, "action_id": second})[0] == 422


def test_a_503_is_not_replayed_for_its_idempotency_key(game: Game, monkeypatch: pytest.MonkeyPatch) -> None:
    alice = game.player("alice")
    body = {"user_id": alice.user_id, "score": 12, "action_id": game.action(alice)}

    with monkeypatch.context() as patch:
        patch.setattr(aws.sqs(), "send_message", sqs_unreachable)
        assert game.post(alice, body, key="k-503")[0] == 503

    assert game.post(alice, body, key="k-503")[0] == 202
    assert game.post(alice, body, key="k-503")[0] == 202, "the success is what is replayed"
    game.drain()
    assert game.total(alice) == 12


def test_a_send_whose_answer_was_lost_records_nothing_and_its_message_changes_nothing(
    game: Game, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice = game.player("alice")
    body = {"user_id": alice.user_id, "score": 300, "action_id": game.action(alice)}
    real_send = aws.sqs().send_message
    monkeypatch.setattr(board_sync, "_CATCH_UP_PAUSES", (0,))

    def delivered_then_failed(**kwargs: Any) -> None:
        real_send(**kwargs)
        raise ConnectionError("the answer from SQS was lost")

    with monkeypatch.context() as patch:
        patch.setattr(aws.sqs(), "send_message", delivered_then_failed)
        assert game.post(alice, body)[0] == 503

    assert game.total(alice) == 0
    assert game.post(alice, body)[0] == 202
    game.drain()  # the first message waits for a write of its own that never comes: its player is synced anyway
    assert (game.total(alice), game.top()[0]["score"]) == (300, 300)


def test_a_last_attempt_whose_answer_was_lost_is_still_accepted(game: Game, monkeypatch: pytest.MonkeyPatch) -> None:
    alice = game.player("alice")
    body = {"user_id": alice.user_id, "score": 17, "action_id": game.action(alice)}
    real_update = aws.dynamodb().update_item
    calls = 0

    def others_then_lost_answer(**kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls < 3:  # somebody else changed the item: the condition fails, as a conflict would
            raise aws.dynamodb().exceptions.ConditionalCheckFailedException(
                {"Error": {"Code": "ConditionalCheckFailedException", "Message": "changed"}}, "UpdateItem"
            )
        real_update(**kwargs)  # the last attempt lands, and its answer is lost
        raise aws.dynamodb().exceptions.ConditionalCheckFailedException(
            {"Error": {"Code": "ConditionalCheckFailedException", "Message": "changed"}}, "UpdateItem"
        )

    with monkeypatch.context() as patch:
        patch.setattr(aws.dynamodb(), "update_item", others_then_lost_answer)
        assert game.post(alice, body)[0] == 202

    game.drain()
    assert game.total(alice) == 17


def test_an_unusable_idempotency_key_is_400_before_a_wrong_user_is_403(game: Game) -> None:
    alice, bob = game.player("alice"), game.player("bob")
    body = {"user_id": bob.user_id, "score": 5, "action_id": game.action(alice)}

    assert game.post(alice, body, key="x" * 256)[0] == 400
    assert game.post(alice, body, key="fine")[0] == 403
