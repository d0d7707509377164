"""The SQS event source mapping as Lambda runs it: the event, what gets deleted after an invocation, and how a batch is
gathered. SQS and the function are fakes here; tests/integration/test_local_event_sources.py runs the real thing."""

import asyncio
import base64
from collections.abc import Sequence
from typing import Any

import pytest

from local.event_sources import (
    BatchOutcome,
    SqsPoller,
    batch_outcome,
    poller_count,
    sqs_event,
)
from local.specs import QueueSpec, SqsEventSource
from local.workers import FunctionError, Invocation

QUEUE_ARN = "arn:aws:sqs:us-east-1:123456789012:work"
IDS = ["m-1", "m-2", "m-3"]


def message(number: int, body: str = "") -> dict[str, Any]:
    return {
        "MessageId": f"m-{number}",
        "ReceiptHandle": f"handle-{number}",
        "MD5OfBody": "md5",
        "Body": body or f"body-{number}",
        "Attributes": {
            "ApproximateReceiveCount": "1",
            "SentTimestamp": "1700000000000",
            "SenderId": "AIDEXAMPLE",
            "ApproximateFirstReceiveTimestamp": "1700000000001",
        },
    }


def test_the_event_has_lambdas_record_shape() -> None:
    received = message(1, '{"score": 5}') | {
        "MD5OfMessageAttributes": "md5-attributes",
        # boto3 hands binary values over as bytes, SQS's JSON protocol as base64 text.
        "MessageAttributes": {
            "kind": {"StringValue": "score", "DataType": "String"},
            "raw": {"BinaryValue": b"\x00\x01", "DataType": "Binary"},
            "raw64": {"BinaryValue": "AAE=", "DataType": "Binary"},
        },
    }

    event = sqs_event([received, message(2)], QUEUE_ARN)

    first, second = event["Records"]
    assert first == {
        "messageId": "m-1",
        "receiptHandle": "handle-1",
        "body": '{"score": 5}',
        "attributes": received["Attributes"],
        "messageAttributes": {
            "kind": {"stringValue": "score", "stringListValues": [], "binaryListValues": [], "dataType": "String"},
            "raw": {"binaryValue": "AAE=", "stringListValues": [], "binaryListValues": [], "dataType": "Binary"},
            "raw64": {"binaryValue": "AAE=", "stringListValues": [], "binaryListValues": [], "dataType": "Binary"},
        },
        "md5OfBody": "md5",
        "md5OfMessageAttributes": "md5-attributes",
        "eventSource": "aws:sqs",
        "eventSourceARN": QUEUE_ARN,
        "awsRegion": "us-east-1",
    }
    assert base64.b64decode(first["messageAttributes"]["raw"]["binaryValue"]) == b"\x00\x01"
    assert "md5OfMessageAttributes" not in second
    assert second["messageAttributes"] == {}


def succeeded(result: Any) -> Invocation:
    return Invocation(result=result)


@pytest.mark.parametrize(
    "result",
    [None, {}, {"batchItemFailures": None}, {"batchItemFailures": []}, {"other": 1}],
)
def test_a_success_without_item_failures_deletes_the_whole_batch(result: Any) -> None:
    assert batch_outcome(succeeded(result), IDS, report_batch_item_failures=True) == BatchOutcome(frozenset())


def test_reported_item_failures_stay_in_the_queue_and_the_rest_is_deleted() -> None:
    result = {"batchItemFailures": [{"itemIdentifier": "m-2"}, {"itemIdentifier": "m-3"}]}

    assert batch_outcome(succeeded(result), IDS, report_batch_item_failures=True) == BatchOutcome(
        frozenset({"m-2", "m-3"})
    )


def test_without_report_batch_item_failures_a_success_deletes_everything_whatever_it_returns() -> None:
    result = {"batchItemFailures": [{"itemIdentifier": "m-2"}]}

    assert batch_outcome(succeeded(result), IDS, report_batch_item_failures=False) == BatchOutcome(frozenset())


@pytest.mark.parametrize(
    "result",
    [
        "ok",
        ["m-1"],
        {"batchItemFailures": "m-1"},
        {"batchItemFailures": [{"itemIdentifier": "not-in-batch"}]},
        {"batchItemFailures": [{"itemIdentifier": ""}]},
        {"batchItemFailures": [{"itemIdentifier": None}]},
        {"batchItemFailures": [{"itemId": "m-1"}]},
        {"batchItemFailures": ["m-1"]},
    ],
)
def test_a_malformed_response_or_an_unknown_id_fails_the_whole_batch_as_on_lambda(result: Any) -> None:
    outcome = batch_outcome(succeeded(result), IDS, report_batch_item_failures=True)

    assert outcome.keep == frozenset(IDS)
    assert outcome.failure


@pytest.mark.parametrize("report_batch_item_failures", [True, False])
@pytest.mark.parametrize(
    "error",
    [FunctionError("ValueError", "boom"), FunctionError("Sandbox.Timedout", "Task timed out after 1.00 seconds")],
)
def test_a_function_error_or_timeout_deletes_nothing(error: FunctionError, report_batch_item_failures: bool) -> None:
    outcome = batch_outcome(Invocation(error=error), IDS, report_batch_item_failures)

    assert outcome.keep == frozenset(IDS)
    assert outcome.failure == f"{error.error_type}: {error.message}"


# --- The poller, with a fake SQS and a fake function ---


def source(batch_size: int = 10, window: int = 0, fifo: bool = False, concurrency: int | None = None) -> SqsEventSource:
    queue = QueueSpec("Work", "http://q/work", QUEUE_ARN, "work", 30, fifo)
    return SqsEventSource("Consumer", "Work", queue, batch_size, window, True, concurrency)


class FakeSqs:
    """Hands out the queued messages at most ``max_messages`` at a time; records receives and deletes."""

    def __init__(self, messages: Sequence[dict[str, Any]] = (), per_receive: int = 10) -> None:
        self.messages = list(messages)
        self.per_receive = per_receive
        self.receives: list[tuple[int, int]] = []
        self.deleted: list[str] = []

    async def receive(self, queue_url: str, max_messages: int, wait_seconds: int) -> list[dict[str, Any]]:
        self.receives.append((max_messages, wait_seconds))
        count = min(max_messages, self.per_receive)
        taken, self.messages = self.messages[:count], self.messages[count:]
        if not taken and wait_seconds:
            await asyncio.sleep(0.01)  # a long poll that found nothing (shortened)
        return taken

    async def delete(self, queue_url: str, receipt_handles: Sequence[str]) -> list[dict[str, Any]]:
        self.deleted += receipt_handles
        return []


class FakeFunction:
    def __init__(self, invocation: Invocation) -> None:
        self.invocation = invocation
        self.events: list[dict[str, Any]] = []

    async def invoke(self, function_id: str, event: Any) -> Invocation:
        self.events.append(event)
        return self.invocation


def poller(spec: SqsEventSource, sqs: FakeSqs, function: FakeFunction, lines: list[str]) -> SqsPoller:
    return SqsPoller(spec, sqs, function, lines.append)


def test_without_a_window_one_long_poll_makes_the_batch() -> None:
    sqs = FakeSqs([message(n) for n in range(1, 4)], per_receive=2)

    batch = asyncio.run(poller(source(), sqs, FakeFunction(succeeded(None)), []).gather_batch())

    assert [m["MessageId"] for m in batch] == ["m-1", "m-2"]
    assert sqs.receives == [(10, 20)]


def test_within_the_window_the_batch_fills_up_to_batch_size_ten_per_receive() -> None:
    sqs = FakeSqs([message(n) for n in range(1, 31)], per_receive=4)

    batch = asyncio.run(poller(source(batch_size=25, window=1), sqs, FakeFunction(succeeded(None)), []).gather_batch())

    assert len(batch) == 25
    assert [wanted for wanted, _ in sqs.receives] == [10, 10, 10, 10, 9, 5, 1]  # never more than it still needs


def test_the_window_ends_a_batch_that_does_not_fill() -> None:
    sqs = FakeSqs([message(1)])

    batch = asyncio.run(poller(source(batch_size=10, window=1), sqs, FakeFunction(succeeded(None)), []).gather_batch())

    assert len(batch) == 1
    assert sqs.receives[0] == (10, 20)
    assert len(sqs.receives) > 1  # it kept gathering until the window ended


def test_a_batch_deletes_all_but_the_reported_failures_and_prints_one_line() -> None:
    sqs = FakeSqs()
    function = FakeFunction(succeeded({"batchItemFailures": [{"itemIdentifier": "m-2"}]}))
    lines: list[str] = []

    outcome = asyncio.run(poller(source(), sqs, function, lines).process([message(1), message(2), message(3)]))

    assert outcome.keep == frozenset({"m-2"})
    assert sqs.deleted == ["handle-1", "handle-3"]
    assert [record["messageId"] for record in function.events[0]["Records"]] == ["m-1", "m-2", "m-3"]
    assert lines[0].startswith("SQS Work -> Consumer: 3 records, 1 failed (kept), 2 deleted, ")
    assert lines[0].endswith(" ms")


def test_a_failed_batch_deletes_nothing() -> None:
    sqs = FakeSqs()
    lines: list[str] = []
    function = FakeFunction(Invocation(error=FunctionError("RuntimeError", "redis is down")))

    asyncio.run(poller(source(), sqs, function, lines).process([message(1), message(2)]))

    assert sqs.deleted == []
    assert "2 records, batch failed (RuntimeError: redis is down), all kept" in lines[0]


def test_several_batches_run_at_once_except_on_a_fifo_queue() -> None:
    assert poller_count(source()) == 4  # the function's worker cap
    assert poller_count(source(concurrency=2)) == 2  # ScalingConfig.MaximumConcurrency
    assert poller_count(source(fifo=True)) == 1  # one batch at a time keeps each group's order


def test_stop_ends_a_long_poll_at_once() -> None:
    class ForeverEmpty(FakeSqs):
        async def receive(self, queue_url: str, max_messages: int, wait_seconds: int) -> list[dict[str, Any]]:
            await asyncio.sleep(3600)
            return []

    async def run() -> None:
        polling = poller(source(), ForeverEmpty(), FakeFunction(succeeded(None)), [])
        polling.start()
        await asyncio.sleep(0.01)
        await asyncio.wait_for(polling.stop(), 1)

    asyncio.run(run())
