"""AWS requests per accepted score, end to end: what a score costs in DynamoDB and SQS requests (AWS bills per request).

The stack runs in-process (moto, tables and queues from template.yaml; the real Redis, a board of its own). PLAYERS
players each start ROUNDS actions and post a score for each through POST /v1/scores's handler, taking turns as
players do. The queue is then drained as Lambda's SQS event source drains it: ReceiveMessage of up to 10 messages
(the template's BatchSize), the consumer (`apply_scores.lambda_handler`) invoked with that batch, then
DeleteMessageBatch of the messages it did not report as failed. Every DynamoDB and SQS request is counted, by
wrapping botocore's `BaseClient._make_api_call`, the one method every client's every operation goes through (the
project's clients, the clients Powertools' idempotency layer creates, the event source's): per stage (post, event
source, consumer) and operation, divided by the scores accepted. The event source's empty receives are not counted:
they cost per second of polling, not per score.

Twice: posting without, then with an `Idempotency-Key` header (a new key per post, as a client that sends one
always would). Starting the actions (POST /v1/actions) is counted apart: it is a request of its own, made before the
score, and reported per action.
"""

import json
import logging
import uuid
import warnings
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from unittest import mock

import botocore.client
import redis

from bench.board_fill import REDIS_URL
from functions.actions import start_action
from functions.scores import apply_scores, post_score
from leaderboard import aws, board
from leaderboard.identity import Identity
from local.event_sources import sqs_event
from local.in_process import in_process_stack
from tests.conftest import FakeLambdaContext, load_event

PLAYERS = 20
ROUNDS = 10
BATCH = 10  # template.yaml: the consumer's SQS BatchSize
BOARD = "bench-aws-requests"
STAGES = ("post", "event_source", "consumer")


class RequestCounter:
    """Counts botocore API calls by (stage, service, operation); `stage` says whose calls are being made."""

    def __init__(self) -> None:
        self.counts: Counter[tuple[str, str, str]] = Counter()
        self.stage_name = "setup"

    @contextmanager
    def installed(self) -> Iterator[None]:
        real = botocore.client.BaseClient._make_api_call
        counter = self

        def counted(client: Any, operation_name: str, api_params: dict[str, Any]) -> Any:
            counter.counts[counter.stage_name, client.meta.service_model.service_name, operation_name] += 1
            return real(client, operation_name, api_params)

        with mock.patch.object(botocore.client.BaseClient, "_make_api_call", counted):
            yield

    @contextmanager
    def stage(self, stage: str) -> Iterator[None]:
        """Count the requests made inside as `stage`'s."""
        previous, self.stage_name = self.stage_name, stage
        try:
            yield
        finally:
            self.stage_name = previous


def _post(player: Identity, action_id: str, score: int, key: str | None) -> int:
    event = load_event("post_score_ok")
    event["requestContext"]["authorizer"]["lambda"] = player.as_context()
    event["body"] = json.dumps({"user_id": player.user_id, "score": score, "action_id": action_id})
    if key is not None:
        event["headers"]["idempotency-key"] = key
    return int(post_score.lambda_handler(event, FakeLambdaContext())["statusCode"])


def _start(player: Identity) -> str:
    event = load_event("start_action_ok")
    event["requestContext"]["authorizer"]["lambda"] = player.as_context()
    event["body"] = None
    response = start_action.lambda_handler(event, FakeLambdaContext())
    assert response["statusCode"] == 201, response
    return str(json.loads(response["body"])["action_id"])


def _scenario(counter: RequestCounter, sqs: Any, queue_url: str, queue_arn: str, keyed: bool) -> dict[str, float]:
    """Post PLAYERS x ROUNDS scores, drain the queue; the requests per accepted score by stage and operation."""
    counter.counts.clear()
    players = [Identity(uuid.uuid4().hex, f"bench{index}", f"Bench {index}") for index in range(PLAYERS)]
    expected: Counter[str] = Counter()
    for round_ in range(ROUNDS):
        for index, player in enumerate(players):
            with counter.stage("action"):
                action_id = _start(player)
            score = 1 + (round_ * PLAYERS + index) % 1000
            with counter.stage("post"):
                status = _post(player, action_id, score, uuid.uuid4().hex if keyed else None)
            assert status == 202, status
            expected[player.user_id] += score
    accepted = PLAYERS * ROUNDS

    while True:
        with counter.stage("event_source"):
            answer = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=BATCH, AttributeNames=["All"])
        messages = answer.get("Messages", [])
        if not messages:
            break
        with counter.stage("consumer"):
            result = apply_scores.lambda_handler(sqs_event(messages, queue_arn), FakeLambdaContext())
        failed = {failure["itemIdentifier"] for failure in result["batchItemFailures"]}
        assert not failed, result
        entries = [{"Id": str(number), "ReceiptHandle": m["ReceiptHandle"]} for number, m in enumerate(messages)]
        with counter.stage("event_source"):
            sqs.delete_message_batch(QueueUrl=queue_url, Entries=entries)
    counter.counts["event_source", "sqs", "ReceiveMessage"] -= 1  # the last one, which found the queue empty

    for player in players:
        found = board.board().standing(player.user_id)
        assert found is not None, "an accepted score never reached the board"
        assert found[0].score == expected[player.user_id], "a score was lost or counted twice"

    variant = "_with_idempotency_key" if keyed else ""
    figures: dict[str, float] = {}
    for (stage, service, operation), count in sorted(counter.counts.items()):
        if service not in ("dynamodb", "sqs"):
            print(f"  note: {count} {service} {operation} requests in stage {stage} (not counted)", flush=True)
        elif stage in STAGES:
            figures[f"aws_requests_per_score{variant}_{stage}_{operation}"] = round(count / accepted, 3)
    per_stage = Counter[str]()
    for (stage, service, _), count in counter.counts.items():
        if service in ("dynamodb", "sqs"):
            per_stage[stage] += count
    for stage in STAGES:
        figures[f"aws_requests_per_score{variant}_{stage}"] = round(per_stage[stage] / accepted, 3)
    figures[f"aws_requests_per_score{variant}"] = round(sum(per_stage[stage] for stage in STAGES) / accepted, 3)
    if not keyed:
        figures["aws_requests_per_action"] = round(per_stage["action"] / accepted, 3)  # one action per score
    return figures


def run() -> dict[str, float]:
    """DynamoDB + SQS requests per accepted score, without and with an Idempotency-Key, and their breakdown."""
    counter = RequestCounter()
    caches = (aws.dynamodb, aws.sqs, board._board, board._redis, post_score._idempotent_accept)
    logging_was = logging.root.manager.disable
    logging.disable(logging.INFO)  # the handlers' per-request log lines would drown the report
    try:
        with (
            in_process_stack(redis_url=REDIS_URL) as stack,
            mock.patch.dict("os.environ", {"BOARD_KEY": BOARD}),
            warnings.catch_warnings(),
            counter.installed(),
        ):
            # Powertools warns once that a post carries no Idempotency-Key: allowed, and the point of the first run.
            warnings.filterwarnings("ignore", "No idempotency key value found")
            for cached in caches:
                cached.cache_clear()
            queue_url, queue_arn = stack.physical_id("ScoresQueue"), stack.arn("ScoresQueue")
            try:
                figures = _scenario(counter, stack.sqs, queue_url, queue_arn, keyed=False)
                figures |= _scenario(counter, stack.sqs, queue_url, queue_arn, keyed=True)
            finally:
                redis.Redis.from_url(REDIS_URL).unlink(*board.board().keys.values())
                for cached in caches:
                    cached.cache_clear()
    finally:
        logging.disable(logging_was)
    return figures
