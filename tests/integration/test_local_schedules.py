"""The Schedule events of ``python -m local`` as real processes, on a small project of its own: a rate, a cron and a
rule with a constant Input feeding one function, a disabled rule, a function that always fails and one still running
when the runtime stops. ``LOCAL_SCHEDULE_SECONDS_PER_MINUTE`` makes a minute last half a second.

The functions record each event in the stack's Redis, so the test sees what EventBridge would have sent.
"""

import json
import re
import signal
import textwrap
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.integration.conftest import Runtime, stop_and_check_nothing_is_left

SECONDS_PER_MINUTE = "0.5"

TEMPLATE = """
Transform: AWS::Serverless-2016-10-31
Globals:
  Function:
    Runtime: python3.13
    Timeout: 5
    CodeUri: code/
Resources:
  TickFunction:
    Type: AWS::Serverless::Function
    Properties:
      Handler: record.lambda_handler
      Events:
        EveryMinute:
          Type: Schedule
          Properties: {Schedule: rate(1 minute)}
        EvenMinutes:
          Type: Schedule
          Properties: {Schedule: "cron(0/2 * * * ? *)", Name: even-minutes}
        Constant:
          Type: Schedule
          Properties: {Schedule: rate(1 minute), Input: '{"job": "constant"}'}
        Paused:
          Type: Schedule
          Properties: {Schedule: rate(1 minute), Enabled: false}
  FailFunction:
    Type: AWS::Serverless::Function
    Properties:
      Handler: fail.lambda_handler
      Events:
        Failing: {Type: Schedule, Properties: {Schedule: rate(1 minute), State: ENABLED}}
  SlowFunction:
    Type: AWS::Serverless::Function
    Properties:
      Handler: slow.lambda_handler
      Timeout: 60
      Events:
        Slow: {Type: Schedule, Properties: {Schedule: rate(1 minute)}}
"""

HANDLERS = {
    "record.py": """
        import json, os
        import redis

        board = redis.Redis.from_url(os.environ["REDIS_URL"])

        def lambda_handler(event, context):
            board.rpush("leaderboard:ticks", json.dumps(event))
        """,
    "fail.py": """
        import os
        import redis

        board = redis.Redis.from_url(os.environ["REDIS_URL"])

        def lambda_handler(event, context):
            board.incr("leaderboard:failures")
            raise RuntimeError("the safety net tore")
        """,
    "slow.py": """
        import os, time
        import redis

        board = redis.Redis.from_url(os.environ["REDIS_URL"])

        def lambda_handler(event, context):
            board.incr("leaderboard:slow")
            time.sleep(30)  # still running when the runtime stops
        """,
}

RULE_ARN = "arn:aws:events:us-east-1:123456789012:rule/"
WAIT_SECONDS = 30.0


@pytest.fixture(autouse=True)
def fast_schedules(monkeypatch: pytest.MonkeyPatch) -> None:
    """A minute of the schedules lasts half a second (the runtime started by ``runtime`` inherits it)."""
    monkeypatch.setenv("LOCAL_SCHEDULE_SECONDS_PER_MINUTE", SECONDS_PER_MINUTE)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    (root / "code").mkdir(parents=True)
    (root / "template.yaml").write_text(TEMPLATE)
    for name, source in HANDLERS.items():
        (root / "code" / name).write_text(textwrap.dedent(source))
    return root


def wait_until(condition: Callable[[], bool], what: str, output: Callable[[], str]) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {WAIT_SECONDS:.0f} s: {what}\n{output()}")
        time.sleep(0.1)


def test_each_schedule_invokes_its_function_as_eventbridge_would_and_the_runtime_stops_cleanly(
    runtime: Runtime,
) -> None:
    stack_redis = redis.Redis.from_url(runtime.endpoints().redis_url)

    def ticks() -> list[dict[str, Any]]:
        return [json.loads(item) for item in stack_redis.lrange("leaderboard:ticks", 0, -1)]

    def from_rule(name: str) -> list[dict[str, Any]]:
        return [event for event in ticks() if event.get("resources") == [RULE_ARN + name]]

    def count(key: str) -> int:
        return int(stack_redis.get(key) or 0)

    wait_until(
        lambda: (
            len(from_rule("leaderboard-local-TickFunctionEveryMinute")) >= 3
            and len(from_rule("even-minutes")) >= 2
            and ticks().count({"job": "constant"}) >= 2
            and count("leaderboard:failures") >= 2
            and count("leaderboard:slow") >= 2
            # The console line of an invocation comes once the function has returned.
            and runtime.output().count("Schedule Failing -> FailFunction: ") >= 2
            and "Schedule EveryMinute -> TickFunction: " in runtime.output()
        ),
        "every enabled schedule invoked its function a few times",
        runtime.output,
    )

    output = runtime.output()
    every_minute = from_rule("leaderboard-local-TickFunctionEveryMinute")
    sample = every_minute[0]
    assert (sample["version"], sample["detail-type"], sample["source"]) == ("0", "Scheduled Event", "aws.events")
    assert (sample["account"], sample["region"], sample["detail"]) == ("123456789012", "us-east-1", {})
    # The first firing is one period after the start, as the console said; then one a minute (on the sped-up clock).
    # Each firing is an invocation of its own (EventBridge invokes asynchronously): they may finish out of order.
    first = re.search(r"rate\(1 minute\) +-> TickFunction  \(EveryMinute, first at (\S+)\)", output)
    assert first is not None, output
    times = sorted(datetime.fromisoformat(event["time"]) for event in every_minute)
    assert times[0] == datetime.fromisoformat(first[1])
    gaps = [later - earlier for earlier, later in pairwise(times)]
    assert all(gap > timedelta(0) and gap % timedelta(minutes=1) == timedelta(0) for gap in gaps), times
    assert len({event["id"] for event in every_minute}) == len(every_minute)
    # The cron fires on even minutes, at their start.
    assert all(re.fullmatch(r".*T\d\d:\d[02468]:00Z", event["time"]) for event in from_rule("even-minutes"))
    # A disabled rule never fires; a failing function is printed, and its schedule goes on.
    assert from_rule("leaderboard-local-TickFunctionPaused") == []
    assert "(Paused, disabled)" in output
    assert "Schedule Failing -> FailFunction: " in output
    assert "failed (RuntimeError: the safety net tore)" in output
    assert "a minute lasts 0.5 s (LOCAL_SCHEDULE_SECONDS_PER_MINUTE)" in output
    assert "  cron(0/2 * * * ? *)  -> TickFunction  (EvenMinutes, first at " in output
    assert "(Constant, constant Input, first at " in output

    # SlowFunction's invocations are still running: Ctrl-C stops them with everything else.
    stop_and_check_nothing_is_left(runtime, signal.SIGINT)
