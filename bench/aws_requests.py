"""What an accepted score costs in AWS, end to end: DynamoDB and SQS requests (billed per request) and DynamoDB read
and write capacity units (billed per unit, on demand or provisioned).

The stack runs in-process (moto, tables and queues from template.yaml; the real Redis, under a key prefix of its own,
REDIS_KEY_PREFIX=KEY_PREFIX, whose keys are deleted afterwards). PLAYERS players each start ROUNDS actions and post a
score for each through POST /v1/scores's handler, taking turns as players do, each action played for the game's
minimum duration (the process's clock moved on: `time.time` shifted). The queue is then drained as Lambda's
SQS event source drains it: ReceiveMessage of up to 10 messages (the template's BatchSize), the consumer
(`apply_scores.lambda_handler`) invoked with that batch, then DeleteMessageBatch of the messages it did not report as
failed. Every check of the result goes through the project's own reads (the global board's standings).

Requests: every DynamoDB and SQS request is counted, by wrapping botocore's `BaseClient._make_api_call`, the one method
every client's every operation goes through (the project's clients and the event source's): per stage (post, event
source, consumer) and operation, divided by the scores accepted.
The event source's empty receives are not counted: they cost per second of polling, not per score. Starting the
actions (POST /v1/actions) is counted apart: a request of its own, made before the score, reported per action.

Write units, by DynamoDB's documented rules, not moto's: for every PutItem, UpdateItem and DeleteItem, and every item
of a TransactWriteItems or BatchWriteItem, the item is read before and after the request (GetItem, strongly
consistent, outside the count) and billed ceil(max(size before, size after) / 1 KB) units, at least 1, twice that
inside a transaction. Read units likewise: every item a GetItem or BatchGetItem asks for is billed ceil(its size /
4 KB) units, at least 1, half that when not strongly consistent. An item's size follows
https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/CapacityUnitCalculations.html (`item_size`). Per
stage of a score's whole flow: the action (StartAction's UpdateItem), the post (a read and a write of the player's
item; with an Idempotency-Key, its receipt read and written with them) and the consumer (the batch's players read).

Runs, each with players of its own:
- the template's GAME with only its `global` board (1 board), without Idempotency-Key: write units;
- the template's GAME (3 boards: global, weekly, daily-best), without and with an `Idempotency-Key` header (a new key
  per post, as a client that sends one always would): requests and write units;
- the template's GAME over DAYS days: each day (the process's clock moved on by a day: `time.time` shifted, so the
  handlers, the seasons and the actions' expiry all see the same day) every player scores once and the queue is
  drained; the player's item then carries that day's daily season, the week's, and the earlier ones still readable.
  Its largest size tells how far the item is from 1 KB, the size up to which each write of it costs 1 unit.
"""

import json
import logging
import math
import os
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, cast
from unittest import mock

import botocore.client
import redis

from bench import template_game
from bench.board_fill import REDIS_URL
from functions.actions import start_action
from functions.scores import apply_scores, post_score
from leaderboard import aws, board
from leaderboard.actions import Action
from leaderboard.game import game
from leaderboard.identity import Identity
from local.event_sources import sqs_event
from local.in_process import InProcessStack, in_process_stack
from tests.conftest import FakeLambdaContext, load_event

PLAYERS = 20
ROUNDS = 10
BATCH = 10  # template.yaml: the consumer's SQS BatchSize
DAYS = 36  # more than a weekly season's readable days (28) after its week: the item reaches its steady size
KEY_PREFIX = "bench-aws-requests"
STAGES = ("post", "event_source", "consumer")
WCU_STAGES = ("action", "post", "consumer")
KB = 1024
WRITES = frozenset({"PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems", "BatchWriteItem"})
READS = frozenset({"GetItem", "BatchGetItem"})
READ_UNIT = 4 * KB
_CONTEXT: Any = FakeLambdaContext()
# The template's boards (3: global, weekly, daily-best): the figures' names say how many.
TEMPLATE_BOARDS = len(json.loads(template_game())["boards"])
_DAY_SECONDS = 86_400


# --- item sizes and write units --------------------------------------------------------------------------------------


def number_size(text: str) -> int:
    """A Number's size: 1 byte per two significant digits (leading and trailing zeroes trimmed), plus 1."""
    mantissa = text.lower().split("e")[0].lstrip("+-").replace(".", "")
    return math.ceil(len(mantissa.strip("0")) / 2) + 1


def value_size(value: Mapping[str, Any]) -> int:
    """The size of an attribute value in DynamoDB's wire format ({"S": ...}, {"M": {...}}...), its name aside."""
    (kind, content), *_ = value.items()
    if kind == "S":
        return len(str(content).encode())
    if kind == "N":
        return number_size(str(content))
    if kind == "B":
        return len(content if isinstance(content, bytes | bytearray) else str(content).encode())
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(len(element.encode()) for element in content)
    if kind == "NS":
        return sum(number_size(element) for element in content)
    if kind == "BS":
        return sum(len(element) for element in content)
    if kind == "L":
        return 3 + sum(1 + value_size(element) for element in content)
    if kind == "M":
        return 3 + sum(1 + len(name.encode()) + value_size(element) for name, element in content.items())
    raise ValueError(f"unknown attribute type {kind}")


def item_size(item: Mapping[str, Any] | None) -> int:
    """An item's size: its attributes' names (UTF-8) and values."""
    return sum(len(name.encode()) + value_size(value) for name, value in (item or {}).items())


def _written_items(operation: str, params: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any], int]]:
    """(table, the item or its key, units per KB) of every item a write request writes."""
    if operation in ("PutItem", "UpdateItem", "DeleteItem"):
        yield params["TableName"], params.get("Key") or params["Item"], 1
    elif operation == "TransactWriteItems":
        for entry in params["TransactItems"]:
            (_, action), *_ = entry.items()
            yield action["TableName"], action.get("Key") or action["Item"], 2
    elif operation == "BatchWriteItem":
        for table, requests in params["RequestItems"].items():
            for request in requests:
                if "PutRequest" in request:
                    yield table, request["PutRequest"]["Item"], 1
                else:
                    yield table, request["DeleteRequest"]["Key"], 1


def _read_units(operation: str, params: Mapping[str, Any], response: Mapping[str, Any]) -> float:
    """The read units a GetItem or BatchGetItem is billed: per item asked for, its size in 4 KB (at least 1), half that
    when not strongly consistent."""
    if operation == "GetItem":
        asked = [(bool(params.get("ConsistentRead")), response.get("Item"))]
    else:
        asked = []
        for table, request in params["RequestItems"].items():
            found = response["Responses"].get(table, [])
            consistent = bool(request.get("ConsistentRead"))
            asked += [(consistent, item) for item in found]
            asked += [(consistent, None)] * (len(request["Keys"]) - len(found))  # a missing item still costs a unit
    return sum(
        max(1, math.ceil(item_size(item) / READ_UNIT)) * (1.0 if consistent else 0.5) for consistent, item in asked
    )


class Meter:
    """Counts botocore API calls by (stage, service, operation) and DynamoDB write and read units by (stage,
    operation); `stage` says whose calls are being made."""

    def __init__(self) -> None:
        self.counts: Counter[tuple[str, str, str]] = Counter()
        self.units: Counter[tuple[str, str]] = Counter()
        self.read_units: defaultdict[tuple[str, str], float] = defaultdict(float)
        self.stage_name = "setup"
        self._key_names: dict[str, list[str]] = {}

    def clear(self) -> None:
        self.counts.clear()
        self.units.clear()
        self.read_units.clear()

    @contextmanager
    def installed(self) -> Iterator[None]:
        real: Callable[[Any, str, dict[str, Any]], Any] = getattr(botocore.client.BaseClient, "_make_api_call")  # noqa: B009
        meter = self

        def metered(client: Any, operation_name: str, api_params: dict[str, Any]) -> Any:
            service = client.meta.service_model.service_name
            meter.counts[meter.stage_name, service, operation_name] += 1
            if service == "dynamodb" and operation_name in READS:
                response = real(client, operation_name, api_params)
                meter.read_units[meter.stage_name, operation_name] += _read_units(operation_name, api_params, response)
                return response
            if service != "dynamodb" or operation_name not in WRITES:
                return real(client, operation_name, api_params)
            written = []
            for table, source, factor in _written_items(operation_name, api_params):
                key = meter._key(real, client, table, source)
                written.append((table, key, factor, meter._size(real, client, table, key)))
            try:
                return real(client, operation_name, api_params)
            finally:
                for table, key, factor, before in written:
                    after = meter._size(real, client, table, key)
                    meter.units[meter.stage_name, operation_name] += factor * max(1, math.ceil(max(before, after) / KB))

        with mock.patch.object(botocore.client.BaseClient, "_make_api_call", metered):
            yield

    def _key(self, real: Callable[..., Any], client: Any, table: str, source: Mapping[str, Any]) -> dict[str, Any]:
        if table not in self._key_names:
            described = real(client, "DescribeTable", {"TableName": table})
            self._key_names[table] = [part["AttributeName"] for part in described["Table"]["KeySchema"]]
        return {name: source[name] for name in self._key_names[table]}

    @staticmethod
    def _size(real: Callable[..., Any], client: Any, table: str, key: dict[str, Any]) -> int:
        found = real(client, "GetItem", {"TableName": table, "Key": key, "ConsistentRead": True})
        return item_size(found.get("Item"))

    @contextmanager
    def stage(self, stage: str) -> Iterator[None]:
        """Count the requests made inside as `stage`'s."""
        previous, self.stage_name = self.stage_name, stage
        try:
            yield
        finally:
            self.stage_name = previous


# --- the flow --------------------------------------------------------------------------------------------------------


def _post(player: Identity, action_id: str, score: int, key: str | None) -> int:
    event = load_event("post_score_ok")
    event["requestContext"]["authorizer"]["lambda"] = player.as_context()
    event["body"] = json.dumps({"user_id": player.user_id, "score": score, "action_id": action_id})
    if key is not None:
        event["headers"]["idempotency-key"] = key
    return int(post_score.lambda_handler(event, _CONTEXT)["statusCode"])


def _start(player: Identity) -> str:
    event = load_event("start_action_ok")
    event["requestContext"]["authorizer"]["lambda"] = player.as_context()
    event["body"] = None
    response = start_action.lambda_handler(event, _CONTEXT)
    assert response["statusCode"] == 201, response
    return str(json.loads(response["body"])["action_id"])


class _Flow:
    """Players scoring through the handlers, and the queue drained as Lambda's event source drains it."""

    def __init__(self, meter: Meter, stack: InProcessStack) -> None:
        self.meter, self.stack = meter, stack
        self.queue_url, self.queue_arn = stack.physical_id("ScoresQueue"), stack.arn("ScoresQueue")
        self.players_table = stack.physical_id("PlayerTotalsTable")

    def play(self, scores: Mapping[Identity, int], keyed: bool) -> None:
        """Each player starts a match, plays it for the game's minimum duration (the clock moved on), scores it."""
        with self.meter.stage("action"):
            actions = {player: _start(player) for player in scores}
        _skip(game().action_types["match"].min_duration_seconds)
        for player, score in scores.items():
            with self.meter.stage("post"):
                status = _post(player, actions[player], score, uuid.uuid4().hex if keyed else None)
            assert status == 202, status

    def drain(self) -> None:
        while True:
            with self.meter.stage("event_source"):
                answer = self.stack.sqs.receive_message(
                    QueueUrl=self.queue_url, MaxNumberOfMessages=BATCH, AttributeNames=["All"]
                )
            messages = answer.get("Messages", [])
            if not messages:
                self.meter.counts["event_source", "sqs", "ReceiveMessage"] -= 1  # an empty poll: per second, not score
                return
            with self.meter.stage("consumer"):
                result = apply_scores.lambda_handler(sqs_event(messages, self.queue_arn), _CONTEXT)
            assert not result["batchItemFailures"], result
            entries: list[Any] = [
                {"Id": str(number), "ReceiptHandle": message["ReceiptHandle"]}
                for number, message in enumerate(messages)
            ]
            with self.meter.stage("event_source"):
                self.stack.sqs.delete_message_batch(QueueUrl=self.queue_url, Entries=entries)

    def item(self, player: Identity) -> dict[str, Any]:
        with self.meter.stage("inspect"):
            found = self.stack.dynamodb.get_item(
                TableName=self.players_table, Key={"user_id": {"S": player.user_id}}, ConsistentRead=True
            )
        return cast(dict[str, Any], found["Item"])

    def check(self, expected: Mapping[Identity, int], boards: int | None) -> None:
        """Every score counted once, on the global board, and (if `boards` is given) one season per board in the
        ledger."""
        definition = game().boards["global"]
        season = board.open_board(definition, definition.season_at(int(time.time() * 1000)))
        for player, points in expected.items():
            found = season.standing(player.user_id)
            assert found is not None, "an accepted score never reached the board"
            assert found[0].score == points, "a score was lost or counted twice"
            assert boards is None or len(self.item(player)["seasons"]["M"]) == boards, self.item(player)


_skipped = [0.0]  # seconds the process's clock has been moved on (run() installs the moved clock)


def _skip(seconds: float) -> None:
    _skipped[0] += seconds


def _players(count: int) -> list[Identity]:
    return [Identity(uuid.uuid4().hex, f"bench{index}", f"Bench {index}") for index in range(count)]


def _requests(meter: Meter, accepted: int, variant: str) -> dict[str, float]:
    figures: dict[str, float] = {}
    for (stage, service, operation), count in sorted(meter.counts.items()):
        if service not in ("dynamodb", "sqs"):
            print(f"  note: {count} {service} {operation} requests in stage {stage} (not counted)", flush=True)
        elif stage in STAGES:
            figures[f"aws_requests_per_score{variant}_{stage}_{operation}"] = round(count / accepted, 3)
    per_stage = Counter[str]()
    for (stage, service, _), count in meter.counts.items():
        if service in ("dynamodb", "sqs"):
            per_stage[stage] += count
    for stage in STAGES:
        figures[f"aws_requests_per_score{variant}_{stage}"] = round(per_stage[stage] / accepted, 3)
    figures[f"aws_requests_per_score{variant}"] = round(sum(per_stage[stage] for stage in STAGES) / accepted, 3)
    if not variant:
        figures["aws_requests_per_action"] = round(per_stage["action"] / accepted, 3)  # one action per score
    return figures


def _write_units(meter: Meter, accepted: int, variant: str) -> dict[str, float]:
    return _units(meter.units, f"dynamodb_wcu_per_score{variant}", accepted) | _units(
        meter.read_units, f"dynamodb_rcu_per_score{variant}", accepted
    )


def _units(counted: Mapping[tuple[str, str], float], name: str, accepted: int) -> dict[str, float]:
    figures: dict[str, float] = {}
    for stage in WCU_STAGES:
        units = {operation: count for (where, operation), count in counted.items() if where == stage}
        for operation, count in units.items():
            figures[f"{name}_{stage}_{operation}"] = round(count / accepted, 3)
        figures[f"{name}_{stage}"] = round(sum(units.values()) / accepted, 3)
    figures[name] = round(sum(figures[f"{name}_{stage}"] for stage in WCU_STAGES), 3)
    return figures


def _rounds(flow: _Flow, keyed: bool, boards: int) -> int:
    """ROUNDS scores per player, then the queue drained; the scores accepted."""
    flow.meter.clear()
    players = _players(PLAYERS)
    expected: Counter[Identity] = Counter()
    for round_ in range(ROUNDS):
        scores = {player: 1 + (round_ * PLAYERS + index) % 1000 for index, player in enumerate(players)}
        flow.play(scores, keyed)
        expected.update(scores)
    flow.drain()
    flow.check(expected, boards)
    return PLAYERS * ROUNDS


def _over_days(flow: _Flow) -> dict[str, float]:
    """One score a day per player for DAYS days; the write units, and the player item's largest size."""
    flow.meter.clear()
    players = _players(PLAYERS)
    expected: Counter[Identity] = Counter()
    real_time = time.time
    largest: tuple[int, dict[str, Any]] = (0, {})
    for day in range(DAYS):
        with mock.patch("time.time", lambda day=day: real_time() + day * _DAY_SECONDS):
            scores = {player: 1 + (day * PLAYERS + index * 37) % 1000 for index, player in enumerate(players)}
            flow.play(scores, keyed=False)
            expected.update(scores)
            flow.drain()
            for player in players:
                item = flow.item(player)
                largest = max(largest, (item_size(item), item), key=lambda pair: pair[0])
    flow.check(expected, boards=None)
    size, item = largest
    seasons = len(item["seasons"]["M"])
    bare = item_size({**item, "seasons": {"M": {}}})
    per_season = (size - bare) / seasons
    print(
        f"  the largest player item: {size} bytes with {seasons} board-seasons ({bare} bytes without them,"
        f" {per_season:.1f} bytes a season)",
        flush=True,
    )
    return _write_units(flow.meter, PLAYERS * DAYS, f"_{TEMPLATE_BOARDS}_boards_over_days") | {
        "dynamodb_player_item_bytes": size,
        "dynamodb_player_item_board_seasons": seasons,
        "dynamodb_player_item_bytes_per_board_season": round(per_season, 1),
        "dynamodb_player_item_bytes_without_seasons": bare,
        "dynamodb_board_seasons_per_kb": math.floor((KB - bare) / per_season),
        # The most open actions of one type a player can hold (`max_open`): each is an id in the item's set.
        "dynamodb_player_item_open_actions_room": (KB - size - len("open:match")) // len(_an_action_id()),
    }


def _an_action_id() -> str:
    return Action.new(game().action_types["match"], int(time.time() * 1000), "bench").action_id


def one_board_game() -> str:
    """The template's GAME with only its `global` board."""
    document = json.loads(template_game())
    document["boards"] = [entry for entry in document["boards"] if entry["id"] == "global"]
    return json.dumps(document)


def run() -> dict[str, float]:
    """DynamoDB + SQS requests per accepted score (without and with an Idempotency-Key) and their breakdown; DynamoDB
    write units per accepted score with one board and with the template's three; the player item's size over days."""
    meter = Meter()
    caches = (aws.dynamodb, aws.sqs, board._open_board, board._redis)
    logging_was = logging.root.manager.disable
    logging.disable(logging.INFO)  # the handlers' per-request log lines would drown the report
    figures: dict[str, float] = {}
    try:
        with (
            in_process_stack(redis_url=REDIS_URL) as stack,
            mock.patch.dict(os.environ, {"REDIS_KEY_PREFIX": KEY_PREFIX}),
            mock.patch("time.time", lambda real=time.time: real() + _skipped[0]),
            meter.installed(),
        ):
            for cached in caches:
                cached.cache_clear()
            flow = _Flow(meter, stack)
            try:
                with mock.patch.dict(os.environ, {"GAME": one_board_game()}):
                    accepted = _rounds(flow, keyed=False, boards=1)
                    figures |= _write_units(meter, accepted, "_1_board")
                boards = TEMPLATE_BOARDS
                with mock.patch.dict(os.environ, {"GAME": template_game()}):
                    accepted = _rounds(flow, keyed=False, boards=boards)
                    figures |= _requests(meter, accepted, "") | _write_units(meter, accepted, f"_{boards}_boards")
                    accepted = _rounds(flow, keyed=True, boards=boards)
                    figures |= _requests(meter, accepted, "_with_idempotency_key")
                    figures |= _write_units(meter, accepted, f"_{boards}_boards_with_idempotency_key")
                    figures |= _over_days(flow)
            finally:
                client = redis.Redis.from_url(REDIS_URL)
                for key in client.scan_iter(match=f"{KEY_PREFIX}:*", count=1000):
                    client.unlink(key)
                for cached in caches:
                    cached.cache_clear()
    finally:
        logging.disable(logging_was)
    return figures
