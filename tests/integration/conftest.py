"""The integration tier: real handlers in-process against the stack in this process (moto's `mock_aws`, tables
and secret built from template.yaml, the signing key served by the emulated Secrets extension); and, for the
local runtime's own tests, `python -m local` as a real process (`runtime`, on each module's `project`).

Redis is the machine's (REDIS_URL); a test that uses the boards (the `game` fixture, or `redis_client`) runs there
and again, marked `[cluster]`, on a three-node Redis Cluster these tests start (redis_cluster.py), through a
cluster-aware client (REDIS_CLUSTER=true): a script or command that strays across two slots fails there. Both runs
are marked `redis` (`-m redis` runs them; `-k cluster` only the cluster's)."""

import inspect
import json
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from unittest import mock

import boto3
import pytest
import redis

from functions.actions import start_action
from functions.scores import apply_scores, get_standing, get_top10, post_score
from leaderboard import aws, board, signing_keys
from leaderboard.game import game as game_definitions
from leaderboard.identity import Identity
from local.in_process import InProcessStack, in_process_stack
from local.processes import RuntimeProcess, free_port, start_serving
from local.services import Endpoints
from tests.conftest import FakeLambdaContext, load_event
from tests.integration import redis_cluster

# The machine's Redis, in a database of the tests' own; every test uses keys under a prefix of its own in it.
REDIS_URL = "redis://127.0.0.1:6379/15"
# The Redis a test runs on (`redis_server`'s parameter).
MACHINE, CLUSTER = "machine", "cluster"


@dataclass(frozen=True)
class RedisServer:
    """A Redis the stack runs on, and whether it takes a cluster-aware client."""

    url: str
    cluster: bool = False

    def client(self) -> board.RedisClient:
        """A client of the test's own (the functions make theirs from REDIS_URL and REDIS_CLUSTER)."""
        return redis.RedisCluster.from_url(self.url) if self.cluster else redis.Redis.from_url(self.url)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "redis: uses the boards; runs on the machine's Redis and on a Redis Cluster")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test that uses the boards (`game`, `redis_client`) or asks for `redis_server` runs on both Redis servers,
    unless it names REDIS_URL (it talks to the machine's Redis itself: give it `game.redis` or `redis_client`)."""
    uses_the_boards = {"game", "redis_client"} & set(metafunc.fixturenames)
    asks_for_a_server = "redis_server" in inspect.signature(metafunc.function).parameters
    if (uses_the_boards or asks_for_a_server) and "REDIS_URL" not in metafunc.function.__code__.co_names:
        servers = [pytest.param(server, marks=pytest.mark.redis) for server in (MACHINE, CLUSTER)]
        metafunc.parametrize("redis_server", servers, indirect=True)


@pytest.fixture(scope="session")
def three_node_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """Started once, for the first test that runs on it; stopped when the session ends."""
    with redis_cluster.three_nodes(tmp_path_factory.mktemp("redis-cluster")) as url:
        yield RedisServer(url, cluster=True)


@pytest.fixture
def redis_server(request: pytest.FixtureRequest) -> RedisServer:
    """The Redis of the test: the machine's, or the three-node cluster (see `pytest_generate_tests`)."""
    if getattr(request, "param", MACHINE) == CLUSTER:
        server: RedisServer = request.getfixturevalue("three_node_cluster")
        return server
    return RedisServer(REDIS_URL)


@pytest.fixture
def redis_client(redis_server: RedisServer) -> Iterator[board.RedisClient]:
    """A client of the test's Redis (the test keeps to keys of its own in it)."""
    client = redis_server.client()
    yield client
    client.close()


class Stack:
    """The provisioned stack, with what tests need to look at or change it."""

    def __init__(self, stack: InProcessStack, redis_server: RedisServer) -> None:
        self.dynamodb = stack.dynamodb
        self.sqs = boto3.client("sqs")
        self.redis = redis_server.client()  # the stack's Redis, to look at or change behind the functions' back
        self._stack = stack

    def physical_id(self, logical_id: str) -> str:
        return self._stack.physical_id(logical_id)

    def items(self, logical_id: str) -> list[dict[str, Any]]:
        return list(self.dynamodb.scan(TableName=self.physical_id(logical_id))["Items"])

    def rotate_signing_key(self) -> signing_keys.SigningKey:
        """Put a new current version of the signing key, as a rotation would, and return it."""
        secret = "rotated-key-0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOP"
        version = self._stack.secretsmanager.put_secret_value(
            SecretId=self._stack.physical_id("SigningKeySecret"), SecretString=f'{{"signing_key": "{secret}"}}'
        )
        return signing_keys.SigningKey(kid=version["VersionId"], secret=secret.encode())


@pytest.fixture
def stack(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, redis_server: RedisServer
) -> Iterator[Stack]:
    """The stack; `@pytest.mark.parametrize("stack", [300], indirect=True)` sets the extension's cache seconds."""
    cache_seconds = getattr(request, "param", 0)
    with in_process_stack(
        extension_cache_seconds=cache_seconds, redis_url=redis_server.url, redis_cluster=redis_server.cluster
    ) as provisioned:
        # What a warm Lambda caches per process (SDK client, keys) starts cold in every test.
        aws.dynamodb.cache_clear()
        monkeypatch.setattr(signing_keys, "keys", signing_keys.SigningKeys())
        provisioned_stack = Stack(provisioned, redis_server)
        yield provisioned_stack
        provisioned_stack.redis.close()
    aws.dynamodb.cache_clear()


def monday_after_next() -> datetime:
    """00:00 UTC on the Monday of the week after next, by the real clock: where a test that runs the functions on a
    clock of its own puts it. Redis expires a season's keys by its own, real, clock (at the season's end plus its
    readable days), so the seasons a test writes must lie ahead of it: a fixed date would be gone as soon as written
    once it is a week or more past."""
    today = datetime.now(UTC).date()  # not time.time(): the tests' clocks replace that
    monday = today - timedelta(days=today.weekday()) + timedelta(weeks=2)
    return datetime(monday.year, monday.month, monday.day, tzinfo=UTC)


def limits(**values: int) -> Any:
    """The stack's rate limits changed for a `with` block, by setting name (e.g. `login_failures_per_device=2`), as a
    deployment would set template.yaml's parameters. (patch.dict, not monkeypatch: see `game`.)"""
    return mock.patch.dict(os.environ, {name.upper(): str(value) for name, value in values.items()})


class Game:
    """Drives the functions the way API Gateway and the SQS event source would."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.queue_url = stack.physical_id("ScoresQueue")
        self.dead_letter_url = stack.physical_id("ScoresDeadLetterQueue")
        self.last_headers: dict[str, str] = {}  # of the last start or post

    @property
    def redis(self) -> board.RedisClient:
        """The stack's Redis (the test's keys are under REDIS_KEY_PREFIX)."""
        return self.stack.redis

    def player(self, name: str) -> Identity:
        """A registered player (registering creates their item in the ledger, with their display name)."""
        player = Identity(user_id=uuid.uuid4().hex, username=name, display_name=name.title())
        self.stack.dynamodb.put_item(
            TableName=self.stack.physical_id("PlayerTotalsTable"),
            Item={"user_id": {"S": player.user_id}, "display_name": {"S": player.display_name}},
        )
        return player

    def start(self, player: Identity, body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
        event = load_event("start_action_ok")
        event["requestContext"]["authorizer"]["lambda"] = player.as_context()
        event["body"] = json.dumps(body) if body is not None else None
        response = start_action.lambda_handler(event, FakeLambdaContext())
        self.last_headers = response["headers"]
        return response["statusCode"], json.loads(response["body"])

    def action(self, player: Identity) -> str:
        status, body = self.start(player)
        assert status == 201, body
        return str(body["action_id"])

    def post(self, player: Identity, body: dict[str, Any] | str, key: str | None = None) -> tuple[int, dict[str, Any]]:
        event = load_event("post_score_ok")
        event["requestContext"]["authorizer"]["lambda"] = player.as_context()
        event["body"] = body if isinstance(body, str) else json.dumps(body)
        if key is not None:
            event["headers"]["idempotency-key"] = key
        response = post_score.lambda_handler(event, FakeLambdaContext())
        self.last_headers = response["headers"]
        return response["statusCode"], json.loads(response["body"])

    def score(self, player: Identity, points: int) -> str:
        action_id = self.action(player)
        status, body = self.post(player, {"user_id": player.user_id, "score": points, "action_id": action_id})
        assert status == 202, body
        return action_id

    def receive(self, visibility_timeout: int = 30) -> list[dict[str, Any]]:
        response = self.stack.sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=10,
            VisibilityTimeout=visibility_timeout,
            AttributeNames=["All"],
        )
        return list(response.get("Messages", []))

    def deliver(self, messages: list[dict[str, Any]]) -> dict[str, Any]:
        """Invoke the consumer with these messages as the SQS event source would; delete the successes."""
        records = [
            {
                "messageId": message["MessageId"],
                "receiptHandle": message["ReceiptHandle"],
                "body": message["Body"],
                "attributes": message.get("Attributes", {}),
                "messageAttributes": {},
                "md5OfBody": message["MD5OfBody"],
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:ScoresQueue",
                "awsRegion": "us-east-1",
            }
            for message in messages
        ]
        result = dict(apply_scores.lambda_handler({"Records": records}, FakeLambdaContext()))
        failed = {failure["itemIdentifier"] for failure in result["batchItemFailures"]}
        for message in messages:
            if message["MessageId"] not in failed:
                self.stack.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])
        return result

    def drain(self) -> int:
        delivered = 0
        while messages := self.receive():
            self.deliver(messages)
            delivered += len(messages)
        return delivered

    def top(self) -> list[dict[str, Any]]:
        response = get_top10.lambda_handler(load_event("get_top10"), FakeLambdaContext())
        assert response["statusCode"] == 200
        return list(json.loads(response["body"]))

    def standing(self, user_id: str) -> tuple[int, dict[str, Any]]:
        event = load_event("get_standing")
        event["pathParameters"] = {"user_id": user_id}
        response = get_standing.lambda_handler(event, FakeLambdaContext())
        return response["statusCode"], json.loads(response["body"])

    def board(self, board_id: str = "global") -> board.Board:
        """The board's current season in Redis."""
        definition = game_definitions().boards[board_id]
        return board.open_board(definition, definition.season_at(int(time.time() * 1000)))

    def total(self, player: Identity, season: str = "global/all") -> int:
        """The player's points on a board's season (all-time by default) as the ledger holds them."""
        item = self.stack.dynamodb.get_item(
            TableName=self.stack.physical_id("PlayerTotalsTable"), Key={"user_id": {"S": player.user_id}}
        ).get("Item")
        entry = (item or {}).get("seasons", {}).get("M", {}).get(season)
        return int(entry["L"][0]["N"]) if entry else 0


@pytest.fixture
def game(stack: Stack) -> Iterator[Game]:
    prefix = f"test-{uuid.uuid4().hex[:12]}"
    for cached in (aws.sqs, board._open_board, board._redis):
        cached.cache_clear()
    # patch.dict, not monkeypatch: its undo must run before the stack restores the environment it set.
    with mock.patch.dict(os.environ, {"REDIS_KEY_PREFIX": prefix}):
        yield Game(stack)
    for key in stack.redis.scan_iter(match=f"{prefix}:*"):
        stack.redis.delete(key)
    for cached in (aws.sqs, board._open_board, board._redis):
        cached.cache_clear()


# --- the local runtime as a real process (tests/integration/test_local_*.py) ---------------------------------------

PROJECT_ROOT = Path(__file__).resolve().parents[2]


class Runtime(RuntimeProcess):
    """The runtime serving a test project's template on a free port."""

    def __init__(self, project: Path, state_dir: Path) -> None:
        port = free_port()
        environment = {key: value for key, value in os.environ.items() if key != "REDIS_URL"}
        environment |= {
            "LOCAL_API_PORT": str(port),
            "LOCAL_EVENT_API_PORT": os.environ.get("LOCAL_EVENT_API_PORT") or str(free_port()),
        }
        super().__init__(
            state_dir, project / "runtime.log", environment, ["--template", str(project / "template.yaml")]
        )
        self.url = f"http://127.0.0.1:{port}"
        self.project = project

    def endpoints(self) -> Endpoints:
        return Endpoints.from_json(self.state_file.read_text())


def start_runtime(project: Path, state_dir: Path) -> Runtime:
    try:
        return start_serving(lambda: Runtime(project, state_dir), timeout_seconds=60)
    except RuntimeError as failed:
        pytest.fail(str(failed))


def stop_and_check_nothing_is_left(runtime: Runtime, signal_number: int) -> None:
    code, orphans = runtime.stop(signal_number)
    assert code == 0, runtime.output()
    assert orphans == [], runtime.output()
    assert not runtime.state_file.exists()
    assert "Stopped." in runtime.output()


@pytest.fixture
def runtime(project: Path, tmp_path: Path) -> Iterator[Runtime]:
    running = start_runtime(project, tmp_path / "state")
    yield running
    if running.process.poll() is None:  # the test failed before stopping it
        running.stop()
