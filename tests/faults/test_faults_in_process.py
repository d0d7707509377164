"""Faults under load that the local runtime cannot make, in this process: the real handlers (the integration tier's
`stack` and `game`: moto's mock_aws, this folder's Redis), players on threads of their own, and ScoresQueue's event
source mapping as a thread that receives, invokes ApplyScores and deletes what Lambda would (local.event_sources'
rules, a visibility timeout of 2 s).

- DynamoDB throttling: moto never throttles. A botocore hook on the functions' DynamoDB client (`before-call`, as
  botocore's Stubber does) answers some calls as DynamoDB does when it throttles, as if the SDK's own retries had met
  it too: ProvisionedThroughputExceededException or ThrottlingException, and for BatchGetItem also every key left
  unprocessed (how a throttled batch comes back).
- A season's reset: time.time() is a clock the test moves through the coming midnight (UTC) that ends a Sunday (the
  weekly and the daily boards reset together; the coming one, as Redis expires a season's keys by its own, real,
  clock), and every player's thread has a clock of its own, set at each of its requests: each player scores at
  moments fixed in advance on both sides of the reset, by a clock skewed from the consumer's by up to a few hundred
  ms (the clocks of two Lambdas never agree exactly, and the skew is exaggerated so that many scores fall near the
  reset).
"""

import contextlib
import json
import os
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any
from unittest import mock

import botocore.awsrequest
import pytest

from functions.actions import start_action
from functions.scores import apply_scores, post_score, roll_over_seasons
from leaderboard import archive, aws
from leaderboard.game import Game, parse
from leaderboard.identity import Identity
from leaderboard.problems import ServiceUnavailable
from local.event_sources import batch_outcome, sqs_event
from local.template import LOCAL_GAME_FILE
from local.workers import FunctionError, Invocation
from tests.conftest import FakeLambdaContext, load_event
from tests.faults.conftest import (
    Accepted,
    Tally,
    board_standings,
    converged,
    disagreements,
    ledger_points,
    record_figures,
    wait_for_room_before_a_reset,
    wait_until_converged,
)
from tests.integration.conftest import Game as Driver

LOCAL_GAME = LOCAL_GAME_FILE.read_text()
VISIBILITY_SECONDS = 2
CONVERGE_SECONDS = 45.0
THROTTLED_LOAD_SECONDS = 6
_WALL_CLOCK = time.time  # the real one, whatever the tests make time.time


@pytest.fixture
def local_game(game: Driver) -> Iterator[Game]:
    """The local runtime's game (matches feed global, weekly and daily-best; no minimum duration) in the functions'
    environment."""
    with mock.patch.dict(os.environ, {"GAME": LOCAL_GAME}):
        yield parse(LOCAL_GAME)


def respond(handler: Any, event_name: str, player: Identity, body: dict[str, Any], key: str | None = None) -> Any:
    """A route's answer to the player, called as API Gateway would (the authorizer's context, payload 2.0)."""
    event = load_event(event_name)
    event["requestContext"]["authorizer"]["lambda"] = player.as_context()
    event["body"] = json.dumps(body)
    if key is not None:
        event["headers"]["idempotency-key"] = key
    return handler.lambda_handler(event, FakeLambdaContext())


class Consumer(threading.Thread):
    """ScoresQueue's event source mapping: receive up to 10, invoke ApplyScores, delete what Lambda would delete (all
    if it succeeded, all but the reported failures; none if it raised)."""

    def __init__(self, driver: Driver) -> None:
        super().__init__(daemon=True)
        self.driver = driver
        self.sqs = driver.stack.sqs
        names: Any = ["QueueArn"]
        attributes = self.sqs.get_queue_attributes(QueueUrl=driver.queue_url, AttributeNames=names)["Attributes"]
        self.queue_arn = attributes["QueueArn"]
        self.stopped = threading.Event()
        self.batches = Counter[str]()  # "applied", "failed" (raised), "partly failed" (reported items)
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.stopped.is_set():
                self.consume_once()
        except BaseException as exc:  # the test fails with it
            self.error = exc

    def consume_once(self) -> None:
        messages = self.sqs.receive_message(
            QueueUrl=self.driver.queue_url, MaxNumberOfMessages=10, VisibilityTimeout=VISIBILITY_SECONDS
        ).get("Messages", [])
        if not messages:
            self.stopped.wait(0.05)
            return
        try:
            result = apply_scores.lambda_handler(sqs_event(messages, self.queue_arn), FakeLambdaContext())
            invocation = Invocation(result=json.loads(json.dumps(result)))
        except Exception as exc:
            invocation = Invocation(error=FunctionError(type(exc).__name__, str(exc)))
        outcome = batch_outcome(invocation, [message["MessageId"] for message in messages], True)
        self.batches["failed" if outcome.failure else "partly failed" if outcome.keep else "applied"] += 1
        for message in messages:
            if message["MessageId"] not in outcome.keep:
                self.sqs.delete_message(QueueUrl=self.driver.queue_url, ReceiptHandle=message["ReceiptHandle"])

    def __enter__(self) -> "Consumer":
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stopped.set()
        self.join(timeout=30)
        assert not self.is_alive(), "the consumer did not stop"
        if self.error is not None:
            raise self.error


def converge(driver: Driver, tally: Tally, definitions: Game) -> float:
    """Seconds until the queue is empty and the 202s, the ledger and every board agree (bounded)."""

    def disagreeing() -> list[str]:
        ledger = ledger_points(driver.stack.dynamodb, driver.stack.physical_id("PlayerTotalsTable"))
        return disagreements(tally.expected(definitions), ledger, lambda key: board_standings(driver.redis, key))

    return wait_until_converged(lambda: converged(driver.stack.sqs, driver.queue_url, disagreeing), CONVERGE_SECONDS)


class Playing:
    """Each player on a thread of their own, playing from the start of the block until `stop` (each finishes the
    score in hand)."""

    def __init__(self, players: list[Identity], play: Callable[[Identity, threading.Event], None]) -> None:
        self._stopped = threading.Event()
        self._threads = [threading.Thread(target=play, args=(player, self._stopped), daemon=True) for player in players]

    def __enter__(self) -> "Playing":
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def playing(self) -> bool:
        """Whether a player has not finished yet."""
        return any(thread.is_alive() for thread in self._threads)

    def stop(self) -> None:
        self._stopped.set()
        for thread in self._threads:
            thread.join(timeout=60)
        assert not any(thread.is_alive() for thread in self._threads), "a player did not stop"


# --- DynamoDB throttling ----------------------------------------------------------------------------------------------


class Throttling:
    """Answers a share of the DynamoDB calls of the client it is registered on as DynamoDB answers when it throttles
    (once the SDK's retries are spent), without reaching moto: nothing of a throttled call is applied. A throttled
    BatchGetItem leaves every key unprocessed (a 200), or fails, half the time each (`unprocessed`)."""

    ERRORS = ("ProvisionedThroughputExceededException", "ThrottlingException")

    def __init__(
        self,
        share: float,
        seed: int,
        operations: tuple[str, ...] = ("GetItem", "UpdateItem", "BatchGetItem", "TransactWriteItems"),
        unprocessed: float = 0.5,
    ) -> None:
        self.share = share
        self.operations = operations
        self.unprocessed = unprocessed
        self.on = False
        self.throttled = Counter[str]()
        self._random = random.Random(seed)
        self._lock = threading.Lock()

    def __call__(self, model: Any, params: dict[str, Any], **kwargs: Any) -> Any:
        operation = model.name
        with self._lock:
            if not (self.on and operation in self.operations and self._random.random() < self.share):
                return None
            self.throttled[operation] += 1
            unprocessed = operation == "BatchGetItem" and self._random.random() < self.unprocessed
            code = self._random.choice(self.ERRORS)
        if unprocessed:  # a 200 that processed nothing: the caller asks again for UnprocessedKeys
            keys = json.loads(params["body"])["RequestItems"]
            return botocore.awsrequest.AWSResponse(None, 200, {}, None), {"Responses": {}, "UnprocessedKeys": keys}
        error = {"Error": {"Code": code, "Message": "Throughput exceeds the current capacity."}}
        return botocore.awsrequest.AWSResponse(None, 400, {}, None), error | {"ResponseMetadata": {}}

    @contextlib.contextmanager
    def registered(self) -> Iterator["Throttling"]:
        """On the functions' DynamoDB client for the block (the tests' own client is never throttled)."""
        aws.dynamodb().meta.events.register("before-call.dynamodb", self)
        try:
            yield self
        finally:
            aws.dynamodb().meta.events.unregister("before-call.dynamodb", self)


def test_dynamodb_throttling_under_load_is_503_with_nothing_changed_and_converges_once_it_stops(
    game: Driver, local_game: Game
) -> None:
    wait_for_room_before_a_reset(THROTTLED_LOAD_SECONDS + 30)  # the real clock: each 202 in one known season
    players = [game.player(f"throttled{index}") for index in range(6)]
    tally = Tally()
    throttling = Throttling(share=0.25, seed=12)
    refused: list[str] = []  # the actions whose score was answered 503 (then posted again)
    changed_on_503: list[str] = []
    totals = dict.fromkeys((player.user_id for player in players), 0)

    def ledger_item(player: Identity) -> dict[str, Any]:
        table = game.stack.physical_id("PlayerTotalsTable")
        key = {"user_id": {"S": player.user_id}}
        return dict(game.stack.dynamodb.get_item(TableName=table, Key=key, ConsistentRead=True)["Item"])

    def play(player: Identity, stop: threading.Event) -> None:
        dice = random.Random(player.user_id)
        keyed = players.index(player) % 2 == 0
        while not stop.is_set():
            started = respond(start_action, "start_action_ok", player, {"type": "match"})
            if started["statusCode"] != 201:
                if started["statusCode"] != 503:
                    tally.wrong(f"POST /v1/actions: {started['statusCode']}")
                continue
            action_id = json.loads(started["body"])["action_id"]
            body = {"user_id": player.user_id, "score": dice.randint(1, 1000), "action_id": action_id}
            for _ in range(50):  # one player, one device: nobody else changes their item meanwhile
                sent_ms = int(time.time() * 1000)
                answer = respond(post_score, "post_score_ok", player, body, f"k-{action_id}" if keyed else None)
                if answer["statusCode"] == 202:
                    totals[player.user_id] += body["score"]
                    answered_ms = int(time.time() * 1000)
                    tally.accept(Accepted(player.user_id, "match", body["score"], sent_ms, answered_ms))
                    break
                if answer["statusCode"] != 503 or answer["headers"].get("Retry-After") != "1":
                    tally.wrong(f"POST /v1/scores: {answer['statusCode']} {answer['headers']}")
                    break
                refused.append(action_id)
                item = ledger_item(player)
                if (
                    action_id not in item.get("open:match", {}).get("SS", [])
                    or int(item.get("accepted_total", {}).get("N", 0)) != totals[player.user_id]
                ):
                    changed_on_503.append(f"{player.username}: {action_id}")
                time.sleep(0.05)  # Retry-After says 1 s; the test's players are impatient

    with throttling.registered(), Consumer(game) as consumer:
        with Playing(players, play):
            time.sleep(1)
            throttling.on = True
            time.sleep(4)  # at most 3 receives of a message (2 s apart) meet it: none reaches the dead-letter queue
            throttling.on = False
            failed_while_throttled = consumer.batches["failed"]
            time.sleep(THROTTLED_LOAD_SECONDS - 5)
        seconds = converge(game, tally, local_game)

    assert tally.wrong_answers == []
    assert refused, "some scores met the throttling"
    assert changed_on_503 == [], "a 503 changed nothing: the action still open, the total as before"
    assert failed_while_throttled > 0, "the consumer failed batches while DynamoDB throttled"
    assert throttling.throttled["BatchGetItem"] > 0
    record_figures(
        "DynamoDB throttling (in-process)",
        scores_accepted=len(tally.accepted),
        answered_503=len(refused),
        calls_throttled=dict(throttling.throttled),
        consumer_batches=dict(consumer.batches),
        converged_in_seconds=round(seconds, 1),
    )


def within(seconds: float, call: Callable[[], Any], throttling: Throttling) -> Any:
    """What `call` returns (or raises), if it ends within `seconds`; else the throttling stops (so that the call ends)
    and the test fails."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = call()
        except Exception as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        throttling.on = False
        thread.join()
        pytest.fail(f"still asking DynamoDB after {seconds} s: {dict(throttling.throttled)}", pytrace=False)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def test_while_dynamodb_leaves_every_key_unprocessed_a_post_is_503_and_the_consumer_fails_after_a_few_tries(
    game: Driver, local_game: Game
) -> None:
    alice = game.player("alice")
    game.score(alice, 10)
    changes = game.receive(visibility_timeout=0)
    body = {"user_id": alice.user_id, "score": 5, "action_id": game.action(alice)}
    throttling = Throttling(share=1.0, seed=0, operations=("BatchGetItem",), unprocessed=1.0)

    with throttling.registered():
        throttling.on = True
        answer = within(5, lambda: respond(post_score, "post_score_ok", alice, body, "key-1"), throttling)
        asked_by_the_post = throttling.throttled["BatchGetItem"]
        with pytest.raises(ServiceUnavailable):
            within(5, lambda: game.deliver(changes), throttling)  # the batch fails: SQS delivers it again
        asked_by_the_consumer = throttling.throttled["BatchGetItem"] - asked_by_the_post
        throttling.on = False

        assert (answer["statusCode"], answer["headers"]["Retry-After"]) == (503, "1")
        assert asked_by_the_post <= 5
        assert asked_by_the_consumer <= 5
        assert game.total(alice) == 10, "nothing changed"
        assert game.top() == []
        game.deliver(changes)  # the redelivery, DynamoDB well again
        assert respond(post_score, "post_score_ok", alice, body, "key-1")["statusCode"] == 202
        game.drain()

    assert (game.total(alice), game.top()[0]["score"]) == (15, 15)


# --- a season's reset ------------------------------------------------------------------------------------------------

# Each player's clock against the consumer's (ms).
SKEWS_MS = (-250, -120, 0, 90, 180, 300)
# The moments each player scores at, by their own clock, from the reset: before it, at it and after it, up to 150 ms
# after (the last changes of a player whose clock runs ahead reach a consumer whose clock has not reached the reset).
SCORES_FROM_RESET_MS = tuple(range(-1500, 151, 75))
PLAYERS_FINISH_SECONDS = 60


def the_coming_reset(definitions: Game) -> int:
    """The next 00:00 UTC on a Monday by the real clock (the weekly and the daily boards reset together): Redis
    expires a season's keys by its own, real, clock, so a season that ended longer ago than it is readable would be
    gone as soon as it is written; a season to come is never."""
    now_ms = int(_WALL_CLOCK() * 1000)
    reset_ms = definitions.boards["weekly"].season_at(now_ms).ends_at_ms
    assert reset_ms is not None
    return reset_ms


class Clocks:
    """time.time() for the whole process. A player's thread reads the moment it set for its request (and the same
    moment throughout the request); every other thread (the consumer, the roll-over) the shared clock, which starts
    at `start_ms` and runs with the wall clock."""

    def __init__(self, start_ms: int) -> None:
        self._start = start_ms / 1000
        self._wall_start = _WALL_CLOCK()
        self._thread = threading.local()

    def __call__(self) -> float:
        moment: float | None = getattr(self._thread, "moment", None)
        return moment if moment is not None else self.shared()

    def shared(self) -> float:
        return self._start + (_WALL_CLOCK() - self._wall_start)

    def seconds_until(self, moment_ms: int) -> float:
        """How long until the shared clock reads `moment_ms` (0 once it has)."""
        return max(0.0, moment_ms / 1000 - self.shared())

    def set_thread_moment(self, moment_ms: int | None) -> None:
        self._thread.moment = None if moment_ms is None else moment_ms / 1000


def test_a_season_rolls_over_while_players_score_and_each_score_counts_in_the_season_it_was_accepted_in(
    game: Driver, local_game: Game, monkeypatch: pytest.MonkeyPatch
) -> None:
    reset_ms = the_coming_reset(local_game)
    # The boards that reset then, and their seasons on either side of it, as the game defines them.
    resetting = {
        definition.id: (definition.season_at(reset_ms - 1).name, definition.season_at(reset_ms).name)
        for definition in local_game.boards.values()
        if definition.season_at(reset_ms - 1) != definition.season_at(reset_ms)
    }
    assert {"weekly", "daily-best"} <= resetting.keys()
    players = [game.player(f"reset{index}") for index in range(len(SKEWS_MS))]
    tally = Tally()
    clocks = Clocks(reset_ms + SCORES_FROM_RESET_MS[0] - max(SKEWS_MS))
    monkeypatch.setattr(time, "time", clocks)

    def play(player: Identity, stop: threading.Event) -> None:
        skew = SKEWS_MS[players.index(player)]
        dice = random.Random(player.user_id)
        for moment_ms in (reset_ms + offset for offset in SCORES_FROM_RESET_MS):
            # When the consumer's clock reads the moment less the skew, or later on a slow machine: the moment is
            # the score's whatever happens, so every player scores on both sides of the reset.
            if stop.wait(clocks.seconds_until(moment_ms - skew)):
                return
            clocks.set_thread_moment(moment_ms)  # the function that accepts it reads this clock
            started = respond(start_action, "start_action_ok", player, {"type": "match"})
            action_id = json.loads(started["body"]).get("action_id")
            body = {"user_id": player.user_id, "score": dice.randint(1, 1000), "action_id": action_id}
            answer = respond(post_score, "post_score_ok", player, body)
            if answer["statusCode"] == 202:
                tally.accept(Accepted(player.user_id, "match", body["score"], moment_ms, moment_ms))
            else:
                tally.wrong(f"POST /v1/scores: {answer['statusCode']} {answer['body']}")
            clocks.set_thread_moment(None)

    archived_during_load = []
    with Consumer(game):
        with Playing(players, play) as playing:
            deadline = time.monotonic() + PLAYERS_FINISH_SECONDS
            while True:  # RollOverSeasons, as its schedule runs it: archives what ended, again as it changes
                finished = not playing.playing()
                archived_during_load += roll_over_seasons.lambda_handler({}, FakeLambdaContext())["archived"]
                if finished:
                    break
                assert time.monotonic() < deadline, f"the players have not finished in {PLAYERS_FINISH_SECONDS} s"
                time.sleep(0.3)
        seconds = converge(game, tally, local_game)

    assert tally.wrong_answers == []
    assert len(tally.accepted) == len(players) * len(SCORES_FROM_RESET_MS)
    expected = tally.expected(local_game)
    for board_id, (ended, started) in resetting.items():
        assert (board_id, ended) in expected, "scores before the reset"
        assert (board_id, started) in expected, "scores after the reset"
        assert f"{board_id}/{ended}" in archived_during_load
    # The archive of the seasons that ended has their last word, once the late scores are in.
    roll_over_seasons.lambda_handler({}, FakeLambdaContext())
    for board_id, (ended, _) in resetting.items():
        archived = archive.archived_top(board_id, ended)
        assert archived is not None
        assert {standing.user_id: standing.score for standing in archived} == expected[board_id, ended]
    record_figures(
        "a season rolls over (in-process)",
        scores_accepted=len(tally.accepted),
        per_season={f"{board}/{season}": sum(points.values()) for (board, season), points in sorted(expected.items())},
        converged_in_seconds=round(seconds, 1),
    )
