"""The SQS event source mapping of ``python -m local`` as real processes, on a small project of its own: a queue with a
dead-letter queue and a consumer reporting batch item failures, a consumer that raises or times out, the VPC and
ElastiCache resources a real stack has, and ``python -m local.invoke`` with ``REDIS_URL``.

The consumers record each delivery in the stack's Redis, so the test sees what Lambda would have run.
"""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import redis

from local.processes import stop_process
from local.services import aws_session, start_redis
from tests.integration.conftest import PROJECT_ROOT, Runtime, stop_and_check_nothing_is_left

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

TEMPLATE = """
Transform: AWS::Serverless-2016-10-31
Globals:
  Function:
    Runtime: python3.13
    Timeout: 5
    VpcConfig:
      SubnetIds: [!Ref Subnet]
      SecurityGroupIds: [!Ref FunctionGroup]
    Environment:
      Variables:
        REDIS_URL: !Sub "rediss://${Cache.Endpoint.Address}:${Cache.Endpoint.Port}/0"
Resources:
  Network:
    Type: AWS::EC2::VPC
    Properties: {CidrBlock: 10.0.0.0/16}
  Subnet:
    Type: AWS::EC2::Subnet
    Properties: {VpcId: !Ref Network, CidrBlock: 10.0.0.0/20, AvailabilityZone: !Select [0, !GetAZs ""]}
  FunctionGroup:
    Type: AWS::EC2::SecurityGroup
    Properties: {GroupDescription: functions, VpcId: !Ref Network}
  Cache:
    Type: AWS::ElastiCache::ServerlessCache
    Properties:
      ServerlessCacheName: !Sub "${AWS::StackName}-cache"
      Engine: valkey
      SubnetIds: [!Ref Subnet]
      SecurityGroupIds: [!GetAtt FunctionGroup.GroupId]
  DeadLetters:
    Type: AWS::SQS::Queue
    Properties: {MessageRetentionPeriod: 1209600}
  WorkQueue:
    Type: AWS::SQS::Queue
    Properties:
      VisibilityTimeout: 3  # above the batching window plus a cold start, so a good message is delivered once
      RedrivePolicy: {deadLetterTargetArn: !GetAtt DeadLetters.Arn, maxReceiveCount: 2}
  FailingQueue:
    Type: AWS::SQS::Queue
    Properties: {VisibilityTimeout: 1}
  ConsumeFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: code/
      Handler: consume.lambda_handler
      Events:
        Work:
          Type: SQS
          Properties:
            Queue: !GetAtt WorkQueue.Arn
            BatchSize: 10
            MaximumBatchingWindowInSeconds: 1
            FunctionResponseTypes: [ReportBatchItemFailures]
  FailFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: code/
      Handler: fail.lambda_handler
      Timeout: 1
      Events:
        Failing: {Type: SQS, Properties: {Queue: !GetAtt FailingQueue.Arn, BatchSize: 1}}
  RebuildFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: code/
      Handler: rebuild.lambda_handler
      Timeout: 900
      Environment:
        Variables:
          WORK_QUEUE_URL: !Ref WorkQueue
"""

CONSUME = """
import json, os
import redis

board = redis.Redis.from_url(os.environ["REDIS_URL"])

def lambda_handler(event, context):
    failures = []
    for record in event["Records"]:
        board.rpush("leaderboard:deliveries", json.dumps(record))
        if record["body"] == "poison":
            failures.append({"itemIdentifier": record["messageId"]})
    return {"batchItemFailures": failures}
"""

FAIL = """
import json, os, time
import redis

board = redis.Redis.from_url(os.environ["REDIS_URL"])

def lambda_handler(event, context):
    (record,) = event["Records"]
    board.rpush("leaderboard:failing", json.dumps(record))
    if record["body"] == "hang":
        time.sleep(30)  # past the function's Timeout of 1 s
    raise RuntimeError(f"cannot handle {record['body']}")
"""

REBUILD = """
import os
import redis

def lambda_handler(event, context):
    board = redis.Redis.from_url(os.environ["REDIS_URL"])
    board.set("leaderboard:rebuilt", "yes")
    return {"event": event, "redis_url": os.environ["REDIS_URL"], "keys": sorted(k.decode() for k in board.keys("*"))}
"""

WAIT_SECONDS = 30.0


def write_project(root: Path) -> Path:
    (root / "code").mkdir(parents=True)
    (root / "template.yaml").write_text(TEMPLATE)
    for name, source in {"consume.py": CONSUME, "fail.py": FAIL, "rebuild.py": REBUILD}.items():
        (root / "code" / name).write_text(textwrap.dedent(source))
    (root / "events").mkdir()
    (root / "events" / "empty.json").write_text("{}")
    return root


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return write_project(tmp_path / "project")


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[str]:
    """A Redis that is not the stack's (as REDIS_URL would name)."""
    process, url = start_redis(tmp_path / "own-redis.log")
    yield url
    stop_process(process)


def wait_until(condition: Callable[[], bool], what: str, output: Callable[[], str]) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {WAIT_SECONDS:.0f} s: {what}\n{output()}")
        time.sleep(0.1)


def messages_in(sqs: "SQSClient", url: str) -> int:
    """Messages the queue still holds, visible or in flight."""
    attributes = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])


def invoke(project: Path, state_dir: Path, function_id: str, redis_url: str) -> subprocess.CompletedProcess[str]:
    environment = {key: value for key, value in os.environ.items() if key != "REDIS_URL"}
    environment |= {"LOCAL_STATE_DIR": str(state_dir)} | ({"REDIS_URL": redis_url} if redis_url else {})
    return subprocess.run(  # noqa: S603 - our own interpreter and module
        [
            sys.executable,
            "-m",
            "local.invoke",
            function_id,
            str(project / "events" / "empty.json"),
            "--template",
            str(project / "template.yaml"),
        ],
        cwd=PROJECT_ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_queue_feeds_its_consumer_as_lambda_does_and_a_poison_message_ends_in_the_dead_letter_queue(
    runtime: Runtime, project: Path, own_redis: str
) -> None:
    endpoints = runtime.endpoints()
    sqs = aws_session(endpoints.session_token).client("sqs", endpoint_url=endpoints.aws_endpoint_url)
    stack_redis = redis.Redis.from_url(endpoints.redis_url)
    work, dead_letters, failing = (endpoints.queue_urls[name] for name in ("WorkQueue", "DeadLetters", "FailingQueue"))
    work_arn = endpoints.identities["WorkQueue"].attributes["Arn"]

    bodies = [f"good-{number}" for number in range(5)] + ["poison"]
    sqs.send_message_batch(
        QueueUrl=work,
        Entries=[
            {
                "Id": str(index),
                "MessageBody": body,
                "MessageAttributes": {"kind": {"DataType": "String", "StringValue": "score"}},
            }
            for index, body in enumerate(bodies)
        ],
    )
    for body in ("raise", "hang"):
        sqs.send_message(QueueUrl=failing, MessageBody=body)

    def delivered(key: str) -> list[dict[str, Any]]:
        return [json.loads(item) for item in stack_redis.lrange(key, 0, -1)]

    def failing_bodies() -> list[str]:
        return [record["body"] for record in delivered("leaderboard:failing")]

    # The poison message is received twice (maxReceiveCount), then SQS moves it on the next receive.
    wait_until(
        lambda: messages_in(sqs, dead_letters) == 1 and messages_in(sqs, work) == 0,
        "the poison message in the DLQ and the work queue empty",
        runtime.output,
    )
    # A function that raises or times out deletes nothing: both come back after the visibility timeout.
    wait_until(
        lambda: failing_bodies().count("raise") >= 2 and failing_bodies().count("hang") >= 2,
        "both failing messages delivered again",
        runtime.output,
    )

    deliveries = delivered("leaderboard:deliveries")
    by_body = {body: [record for record in deliveries if record["body"] == body] for body in bodies}
    assert {body: len(records) for body, records in by_body.items()} == {**dict.fromkeys(bodies[:5], 1), "poison": 2}
    assert [record["attributes"]["ApproximateReceiveCount"] for record in by_body["poison"]] == ["1", "2"]
    (dead,) = sqs.receive_message(QueueUrl=dead_letters, MaxNumberOfMessages=10)["Messages"]
    assert dead["Body"] == "poison"
    assert messages_in(sqs, failing) == 2

    record = by_body["good-0"][0]
    assert (record["eventSource"], record["eventSourceARN"], record["awsRegion"]) == ("aws:sqs", work_arn, "us-east-1")
    assert set(record["attributes"]) >= {
        "ApproximateReceiveCount",
        "SentTimestamp",
        "SenderId",
        "ApproximateFirstReceiveTimestamp",
    }
    assert record["messageAttributes"]["kind"]["stringValue"] == "score"
    assert len(record["md5OfBody"]) == 32

    # local.invoke: a function with no events, the event {}, the stack's Redis unless REDIS_URL names another one.
    on_stack = invoke(project, runtime.state_dir, "RebuildFunction", redis_url="")
    on_own = invoke(project, runtime.state_dir, "RebuildFunction", redis_url=own_redis)
    assert on_stack.returncode == 0, on_stack.stderr
    assert json.loads(on_stack.stdout)["redis_url"] == endpoints.redis_url
    assert json.loads(on_stack.stdout)["event"] == {}
    assert on_own.returncode == 0, on_own.stderr
    assert json.loads(on_own.stdout)["redis_url"] == own_redis
    assert redis.Redis.from_url(own_redis).get("leaderboard:rebuilt") == b"yes"

    output = runtime.output()
    assert "  WorkQueue     http://" in output
    assert "(visibility 3 s, to DeadLetters after 2 receives)" in output
    assert "-> ConsumeFunction  (batch 10, window 1 s, ReportBatchItemFailures, up to 4 batches at once)" in output
    # One SendMessageBatch, one batch: the window gathered them all.
    assert "SQS WorkQueue -> ConsumeFunction: 6 records, 1 failed (kept), 5 deleted" in output
    assert "SQS WorkQueue -> ConsumeFunction: 1 record, 1 failed (kept), 0 deleted" in output
    assert "SQS FailingQueue -> FailFunction: 1 record, batch failed (RuntimeError: cannot handle raise)" in output
    assert "SQS FailingQueue -> FailFunction: 1 record, batch failed (Sandbox.Timedout: " in output
    stop_and_check_nothing_is_left(runtime, signal.SIGINT)


def test_invoke_without_a_stack_uses_redis_url_as_it_is(project: Path, tmp_path: Path, own_redis: str) -> None:
    client = redis.Redis.from_url(own_redis)
    client.set("leaderboard:board", "kept")

    invoked = invoke(project, tmp_path / "state", "RebuildFunction", redis_url=own_redis)

    assert invoked.returncode == 0, invoked.stderr
    result = json.loads(invoked.stdout)
    assert result["redis_url"] == own_redis
    # Nothing of that Redis was cleared: one invocation never wipes a board.
    assert result["keys"] == ["leaderboard:board", "leaderboard:rebuilt"]
    assert client.get("leaderboard:board") == b"kept"
