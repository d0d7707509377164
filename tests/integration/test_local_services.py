"""The local stack's services: moto with template.yaml's resources, and Redis, started clean every time; moto's
server safe for concurrent requests."""

import json
import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import redis

from local.processes import pid_alive, stop_process
from local.services import LocalServices, aws_session, start_moto, start_redis
from local.template import Template

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

PROJECT_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def template() -> Template:
    return Template(PROJECT_ROOT / "template.yaml")


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[str]:
    """A Redis that belongs to someone else (as REDIS_URL would)."""
    process, url = start_redis(tmp_path / "someone-elses-redis.log")
    yield url
    stop_process(process)


def test_the_template_resources_are_created_in_moto_and_everything_stops(
    template: Template, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    services = LocalServices(template, tmp_path, lambda _: None)
    endpoints = services.start()
    try:
        session = aws_session(endpoints.session_token)
        dynamodb = session.client("dynamodb", endpoint_url=endpoints.aws_endpoint_url)
        secretsmanager = session.client("secretsmanager", endpoint_url=endpoints.aws_endpoint_url)
        sqs = session.client("sqs", endpoint_url=endpoints.aws_endpoint_url)

        tables = dynamodb.list_tables()["TableNames"]
        queue = sqs.get_queue_attributes(QueueUrl=endpoints.queue_urls["ScoresQueue"], AttributeNames=["All"])
        dead_letters = endpoints.identities["ScoresDeadLetterQueue"]
        ttl = dynamodb.describe_time_to_live(TableName="leaderboard-local-TokenFamiliesTable")
        key = dynamodb.describe_table(TableName="leaderboard-local-UsersTable")["Table"]["KeySchema"]
        secret_arn = endpoints.identities["SigningKeySecret"].ref
        secret = json.loads(secretsmanager.get_secret_value(SecretId=secret_arn)["SecretString"])
        redis_pong = redis.Redis.from_url(endpoints.redis_url).ping()
    finally:
        pids = services.child_pids()
        services.stop()

    assert set(tables) >= {f"leaderboard-local-{name}" for name in ("UsersTable", "TokenFamiliesTable")}
    assert ttl["TimeToLiveDescription"] == {"AttributeName": "expires_at", "TimeToLiveStatus": "ENABLED"}
    assert key == [{"AttributeName": "username_key", "KeyType": "HASH"}]
    # GenerateSecretString: {"signing_key": <64 characters, no punctuation>} as CloudFormation would make it.
    assert list(secret) == ["signing_key"]
    assert re.fullmatch(r"[A-Za-z0-9]{64}", secret["signing_key"])
    assert secret_arn.startswith("arn:aws:secretsmanager:us-east-1:123456789012:secret:leaderboard-local-")
    assert redis_pong is True
    # The queue as the template defines it, its redrive policy pointing at the dead-letter queue's ARN.
    assert queue["Attributes"]["VisibilityTimeout"] == "60"
    assert queue["Attributes"]["MessageRetentionPeriod"] == "1209600"
    assert json.loads(queue["Attributes"]["RedrivePolicy"]) == {
        "deadLetterTargetArn": dead_letters.attributes["Arn"],
        "maxReceiveCount": 5,
    }
    assert endpoints.identities["ScoresQueue"].ref == endpoints.queue_urls["ScoresQueue"]
    assert dead_letters.attributes["QueueName"] == "leaderboard-local-ScoresDeadLetterQueue"
    assert set(pids) == {"moto", "redis"}
    assert not any(pid_alive(pid) for pid in pids.values())


def test_with_redis_url_only_the_leaderboard_prefix_is_cleared_and_that_redis_is_left_running(
    template: Template, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, own_redis: str
) -> None:
    client = redis.Redis.from_url(own_redis)
    client.set("leaderboard:board", "stale")
    client.set("leaderboard:user:1", "stale")
    client.set("someone-else:data", "precious")
    monkeypatch.setenv("REDIS_URL", own_redis)

    services = LocalServices(template, tmp_path, lambda _: None)
    endpoints = services.start()
    started = set(services.child_pids())
    services.stop()

    assert endpoints.redis_url == own_redis
    assert started == {"moto"}
    assert client.keys("*") == [b"someone-else:data"]
    assert client.ping() is True


# --- moto's server as the runtime runs it (local.moto_server): safe for concurrent requests ---


@pytest.fixture
def moto_endpoint(tmp_path: Path) -> Iterator[str]:
    process, endpoint = start_moto(tmp_path / "moto.log")
    yield endpoint
    stop_process(process)


def counters_table(endpoint: str, fillers: int = 0) -> "DynamoDBClient":
    dynamodb = aws_session("token").client("dynamodb", endpoint_url=endpoint)
    dynamodb.create_table(
        TableName="counters",
        AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )
    for start in range(0, fillers, 25):
        items = [{"PutRequest": {"Item": {"k": {"S": f"filler-{n}"}}}} for n in range(start, min(start + 25, fillers))]
        dynamodb.batch_write_item(RequestItems={"counters": items})  # type: ignore[dict-item]
    return dynamodb


def add_one(key: str, condition: str | None = None) -> dict[str, Any]:
    update: dict[str, Any] = {
        "TableName": "counters",
        "Key": {"k": {"S": key}},
        "UpdateExpression": "ADD n :one",
        "ExpressionAttributeValues": {":one": {"N": "1"}},
    }
    return {"Update": update | ({"ConditionExpression": condition} if condition else {})}


def test_a_cancelled_transaction_changes_nothing_and_undoes_no_one_elses_writes(moto_endpoint: str) -> None:
    dynamodb = counters_table(moto_endpoint, fillers=300)
    rounds = 60

    def succeed() -> None:
        client = aws_session("token").client("dynamodb", endpoint_url=moto_endpoint)
        for _ in range(rounds):
            client.transact_write_items(TransactItems=[add_one("counted")])  # type: ignore[list-item]

    def fail() -> None:
        client = aws_session("token").client("dynamodb", endpoint_url=moto_endpoint)
        for _ in range(rounds):
            with pytest.raises(client.exceptions.TransactionCanceledException):
                client.transact_write_items(
                    TransactItems=[add_one("written-then-undone"), add_one("never", "attribute_exists(nope)")]  # type: ignore[list-item]
                )

    with ThreadPoolExecutor(3) as pool:
        for done in [pool.submit(succeed), pool.submit(fail), pool.submit(fail)]:
            done.result()

    # moto alone restores whole-table copies on a cancel, losing concurrent writes; AWS never does.
    counted = dynamodb.get_item(TableName="counters", Key={"k": {"S": "counted"}})["Item"]
    assert counted["n"] == {"N": str(rounds)}
    assert "Item" not in dynamodb.get_item(TableName="counters", Key={"k": {"S": "written-then-undone"}})
    assert dynamodb.scan(TableName="counters", Select="COUNT")["Count"] == 300 + 1


def test_a_cancelled_transaction_puts_back_exactly_what_it_had_written(moto_endpoint: str) -> None:
    dynamodb = counters_table(moto_endpoint)
    dynamodb.put_item(TableName="counters", Item={"k": {"S": "existing"}, "n": {"N": "1"}})

    with pytest.raises(dynamodb.exceptions.TransactionCanceledException):
        dynamodb.transact_write_items(
            TransactItems=[
                add_one("existing"),  # type: ignore[list-item]
                {"Put": {"TableName": "counters", "Item": {"k": {"S": "new"}}}},
                {"Delete": {"TableName": "counters", "Key": {"k": {"S": "existing-too"}}}},
                {"ConditionCheck": {"TableName": "counters", "Key": {"k": {"S": "x"}}, "ConditionExpression": "n > 1"}},
            ]
        )

    items = {item["k"]["S"]: item for item in dynamodb.scan(TableName="counters")["Items"]}
    assert items == {"existing": {"k": {"S": "existing"}, "n": {"N": "1"}}}


def test_concurrent_receives_never_hand_out_one_message_twice(moto_endpoint: str) -> None:
    sqs = aws_session("token").client("sqs", endpoint_url=moto_endpoint)
    url = sqs.create_queue(QueueName="work")["QueueUrl"]
    total = 60
    for start in range(0, total, 10):
        sqs.send_message_batch(
            QueueUrl=url, Entries=[{"Id": str(n), "MessageBody": f"m-{n}"} for n in range(start, start + 10)]
        )

    def receive_all() -> list[str]:
        client = aws_session("token").client("sqs", endpoint_url=moto_endpoint)
        bodies: list[str] = []
        while True:
            messages = client.receive_message(QueueUrl=url, MaxNumberOfMessages=3, WaitTimeSeconds=1).get("Messages")
            if not messages:
                return bodies
            bodies += [message["Body"] for message in messages]

    with ThreadPoolExecutor(8) as pool:
        received = [body for bodies in pool.map(lambda _: receive_all(), range(8)) for body in bodies]

    assert sorted(received) == sorted(f"m-{n}" for n in range(total))


def test_a_long_poll_returns_as_soon_as_a_message_is_sent(moto_endpoint: str) -> None:
    sqs = aws_session("token").client("sqs", endpoint_url=moto_endpoint)
    url = sqs.create_queue(QueueName="work")["QueueUrl"]

    with ThreadPoolExecutor(1) as pool:
        started = time.monotonic()
        polling = pool.submit(sqs.receive_message, QueueUrl=url, WaitTimeSeconds=10)
        time.sleep(0.3)
        sqs.send_message(QueueUrl=url, MessageBody="hello")
        messages = polling.result(timeout=10)["Messages"]
        elapsed = time.monotonic() - started

    assert [message["Body"] for message in messages] == ["hello"]
    assert elapsed < 2
