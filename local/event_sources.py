"""SQS event source mappings, run the way Lambda runs them: poll the queue, invoke the function with a batch, delete
what succeeded.

For each ``SQS`` event of a function, a few pollers (Lambda runs several; here up to the function's worker cap, one for
a FIFO queue) each repeat: long-poll the queue (20 s, as Lambda does), gather up to ``BatchSize`` messages or until
``MaximumBatchingWindowInSeconds`` has passed since the first one arrived, invoke the function synchronously with the
standard SQS event, then delete

- every message, when the function succeeded (and does not report batch item failures);
- every message but those listed in ``{"batchItemFailures": [{"itemIdentifier": messageId}]}``, with
  ``FunctionResponseTypes: [ReportBatchItemFailures]``; a malformed response or an unknown id fails the whole batch,
  as on Lambda;
- nothing, when the function raised, timed out or crashed: the messages come back once the queue's visibility timeout
  ends, and the queue's RedrivePolicy (moto applies it on receive, as SQS does) moves one to the dead-letter queue
  after ``maxReceiveCount`` receives.

The pollers talk to moto's server over SQS's JSON protocol with aiohttp (requests signed like the SDK's), so a long
poll is a coroutine that stops at once on Ctrl-C.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from local.specs import SqsEventSource
from local.template import REGION
from local.workers import MAX_WORKERS_PER_FUNCTION, Invocation, Invoker

# Lambda's pollers long-poll for 20 s, SQS's maximum.
LONG_POLL_SECONDS = 20
# SQS hands out at most 10 messages per ReceiveMessage.
MAX_MESSAGES_PER_RECEIVE = 10
# Lambda's synchronous invocation payload limit is 6 MB; stop gathering once a further message (up to SQS's 1 MiB
# maximum) could pass it.
MAX_EVENT_BYTES = 6 * 1024 * 1024 - 1024 * 1024
# After an SQS error (moto stopping, a deleted queue), wait this long before polling again.
RETRY_SECONDS = 1.0

Say = Callable[[str], None]


class SqsError(Exception):
    """SQS answered with an error."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


class QueueClient(Protocol):
    """What a poller needs from SQS (:class:`SqsClient`, or a fake in tests)."""

    async def receive(self, queue_url: str, max_messages: int, wait_seconds: int) -> list[dict[str, Any]]:
        """Receive up to ``max_messages``, long-polling ``wait_seconds``."""
        ...

    async def delete(self, queue_url: str, receipt_handles: Sequence[str]) -> list[dict[str, Any]]:
        """Delete messages; return the entries that failed."""
        ...


class SqsClient:
    """The SQS actions an event source mapping needs, over SQS's JSON protocol, signed like the SDK signs them."""

    def __init__(self, endpoint_url: str, access_key: str, secret_key: str, session_token: str) -> None:
        self._endpoint = endpoint_url.rstrip("/") + "/"
        self._signer = SigV4Auth(Credentials(access_key, secret_key, session_token), "sqs", REGION)
        self._http: aiohttp.ClientSession | None = None

    async def call(self, action: str, payload: Mapping[str, Any], timeout_seconds: float = 10) -> dict[str, Any]:
        """Call one SQS action and return its JSON answer (raises SqsError for an error answer)."""
        if self._http is None:
            self._http = aiohttp.ClientSession()
        body = json.dumps(payload).encode()
        headers = {"Content-Type": "application/x-amz-json-1.0", "X-Amz-Target": f"AmazonSQS.{action}"}
        request = AWSRequest("POST", self._endpoint, data=body, headers=headers)
        self._signer.add_auth(request)
        async with self._http.post(
            self._endpoint,
            data=body,
            headers=dict(request.headers.items()),
            timeout=aiohttp.ClientTimeout(total=timeout_seconds),
        ) as response:
            answer = await response.json(content_type=None)
        if response.status != 200:
            code = str(answer.get("__type", response.status)).rpartition("#")[2]
            raise SqsError(code, str(answer.get("message") or answer.get("Message") or ""))
        return answer if isinstance(answer, dict) else {}

    async def receive(self, queue_url: str, max_messages: int, wait_seconds: int) -> list[dict[str, Any]]:
        """ReceiveMessage with every system and message attribute (what Lambda's poller asks for)."""
        answer = await self.call(
            "ReceiveMessage",
            {
                "QueueUrl": queue_url,
                "MaxNumberOfMessages": max_messages,
                "WaitTimeSeconds": wait_seconds,
                "MessageSystemAttributeNames": ["All"],
                "MessageAttributeNames": ["All"],
            },
            timeout_seconds=wait_seconds + 10,
        )
        return list(answer.get("Messages") or [])

    async def delete(self, queue_url: str, receipt_handles: Sequence[str]) -> list[dict[str, Any]]:
        """DeleteMessageBatch, 10 at a time; return the entries that failed."""
        failed: list[dict[str, Any]] = []
        for start in range(0, len(receipt_handles), MAX_MESSAGES_PER_RECEIVE):
            chunk = receipt_handles[start : start + MAX_MESSAGES_PER_RECEIVE]
            entries = [{"Id": str(index), "ReceiptHandle": handle} for index, handle in enumerate(chunk)]
            answer = await self.call("DeleteMessageBatch", {"QueueUrl": queue_url, "Entries": entries})
            failed += answer.get("Failed") or []
        return failed

    async def close(self) -> None:
        """Close the HTTP connections."""
        if self._http is not None:
            await self._http.close()
            self._http = None


# --- The event and the function's answer ---


def sqs_record(message: Mapping[str, Any], queue_arn: str) -> dict[str, Any]:
    """One record of Lambda's SQS event, from a message as ReceiveMessage returns it (JSON protocol or boto3)."""
    record: dict[str, Any] = {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message.get("Body", ""),
        "attributes": dict(message.get("Attributes") or {}),
        "messageAttributes": {
            name: _message_attribute(value) for name, value in (message.get("MessageAttributes") or {}).items()
        },
        "md5OfBody": message.get("MD5OfBody", ""),
    }
    if message.get("MD5OfMessageAttributes"):
        record["md5OfMessageAttributes"] = message["MD5OfMessageAttributes"]
    record |= {"eventSource": "aws:sqs", "eventSourceARN": queue_arn, "awsRegion": REGION}
    return record


def _message_attribute(value: Mapping[str, Any]) -> dict[str, Any]:
    # Lambda spells message attributes in camelCase; binary values travel base64-encoded (boto3 hands over bytes).
    attribute: dict[str, Any] = {}
    if "StringValue" in value:
        attribute["stringValue"] = value["StringValue"]
    if "BinaryValue" in value:
        binary = value["BinaryValue"]
        attribute["binaryValue"] = base64.b64encode(binary).decode() if isinstance(binary, bytes) else binary
    attribute |= {"stringListValues": [], "binaryListValues": [], "dataType": value.get("DataType", "String")}
    return attribute


def sqs_event(messages: Iterable[Mapping[str, Any]], queue_arn: str) -> dict[str, Any]:
    """Lambda's SQS event for a batch of received messages: ``{"Records": [...]}``."""
    return {"Records": [sqs_record(message, queue_arn) for message in messages]}


@dataclass(frozen=True)
class BatchOutcome:
    """What Lambda does with a batch after the invocation: which messages stay in the queue, and why."""

    keep: frozenset[str]
    failure: str | None = None  # why the whole batch failed, if it did


def batch_outcome(invocation: Invocation, message_ids: Sequence[str], report_batch_item_failures: bool) -> BatchOutcome:
    """Lambda's rules: an error keeps the whole batch; otherwise all go, except the reported item failures."""
    everything = frozenset(message_ids)
    if invocation.error is not None:
        return BatchOutcome(everything, f"{invocation.error.error_type}: {invocation.error.message}")
    result = invocation.result
    if not report_batch_item_failures or result is None:
        return BatchOutcome(frozenset())
    if not isinstance(result, dict):
        return BatchOutcome(everything, "malformed response: not a JSON object")
    failures = result.get("batchItemFailures")
    if failures is None:
        return BatchOutcome(frozenset())
    if not isinstance(failures, list):
        return BatchOutcome(everything, "malformed response: batchItemFailures is not a list")
    keep: set[str] = set()
    for failure in failures:
        identifier = failure.get("itemIdentifier") if isinstance(failure, dict) else None
        if not isinstance(identifier, str) or not identifier:
            return BatchOutcome(everything, f"malformed batch item failure {failure!r}")
        if identifier not in everything:
            return BatchOutcome(everything, f"batch item failure {identifier!r} is not a message of the batch")
        keep.add(identifier)
    return BatchOutcome(frozenset(keep))


# --- Pollers ---


def poller_count(source: SqsEventSource) -> int:
    """How many batches of one event source may run at once: one for FIFO (order), else up to the worker cap."""
    if source.queue.fifo:
        return 1
    return min(MAX_WORKERS_PER_FUNCTION, source.maximum_concurrency or MAX_WORKERS_PER_FUNCTION)


class SqsPoller:
    """The event source mapping of one ``SQS`` event: a few concurrent poll-invoke-delete loops."""

    def __init__(self, source: SqsEventSource, client: QueueClient, invoker: Invoker, say: Say) -> None:
        self.source = source
        self._client = client
        self._invoker = invoker
        self._say = say
        self._tasks: list[asyncio.Task[None]] = []
        self._last_error = ""

    @property
    def label(self) -> str:
        """``Queue -> Function``, for the console."""
        return f"SQS {self.source.queue.logical_id} -> {self.source.function_id}"

    def start(self) -> None:
        """Start polling (in the running event loop)."""
        self._tasks = [asyncio.create_task(self._loop(), name=self.label) for _ in range(poller_count(self.source))]

    async def stop(self) -> None:
        """Stop polling; a batch being processed is abandoned (its messages come back after the visibility timeout)."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    async def _loop(self) -> None:
        while True:
            try:
                messages = await self.gather_batch()
                await self.process(messages)
                self._last_error = ""
            except Exception as exc:  # SQS errors, moto gone, a bug here: report it and keep polling
                message = f"{type(exc).__name__}: {exc}"
                if message != self._last_error:  # once, not every second
                    self._say(f"{self.label}: {message}; retrying")
                    self._last_error = message
                await asyncio.sleep(RETRY_SECONDS)

    async def gather_batch(self) -> list[dict[str, Any]]:
        """Wait for messages, then gather up to BatchSize of them within the batching window."""
        source = self.source
        url = source.queue.url
        messages: list[dict[str, Any]] = []
        while not messages:
            first = min(MAX_MESSAGES_PER_RECEIVE, source.batch_size)
            messages = await self._client.receive(url, first, LONG_POLL_SECONDS)
        deadline = time.monotonic() + source.batching_window_seconds
        size = sum(len(message.get("Body", "")) for message in messages)
        while len(messages) < source.batch_size and size < MAX_EVENT_BYTES:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            # WaitTimeSeconds is whole seconds (a long poll returns as soon as a message is there); the last
            # fraction of the window is short polls.
            wait = round(remaining)
            wanted = min(MAX_MESSAGES_PER_RECEIVE, source.batch_size - len(messages))
            received = await self._client.receive(url, wanted, wait)
            if not received and wait == 0:
                await asyncio.sleep(min(remaining, 0.05))
            messages += received
            size += sum(len(message.get("Body", "")) for message in received)
        return messages

    async def process(self, messages: Sequence[Mapping[str, Any]]) -> BatchOutcome:
        """Invoke the function with one batch and delete the messages Lambda would delete."""
        source = self.source
        event = sqs_event(messages, source.queue.arn)
        started = time.perf_counter()
        invocation = await self._invoker.invoke(source.function_id, event)
        ids = [str(message["MessageId"]) for message in messages]
        outcome = batch_outcome(invocation, ids, source.report_batch_item_failures)
        handles = [str(message["ReceiptHandle"]) for message in messages if message["MessageId"] not in outcome.keep]
        failed_deletes = await self._client.delete(source.queue.url, handles) if handles else []
        elapsed_ms = (time.perf_counter() - started) * 1000
        self._say(self._describe(len(messages), outcome, len(failed_deletes), invocation, elapsed_ms))
        return outcome

    def _describe(
        self, size: int, outcome: BatchOutcome, failed_deletes: int, invocation: Invocation, elapsed_ms: float
    ) -> str:
        line = f"{self.label}: {size} record{'s' if size != 1 else ''}"
        if outcome.failure:
            line += f", batch failed ({outcome.failure}), all kept"
        elif outcome.keep:
            line += f", {len(outcome.keep)} failed (kept), {size - len(outcome.keep)} deleted"
        else:
            line += ", all deleted"
        if failed_deletes:
            line += f" ({failed_deletes} could not be deleted)"
        line += f", {elapsed_ms:.0f} ms"
        if invocation.init_ms is not None:
            line += f" (cold start {invocation.init_ms:.0f} ms)"
        return line


class EventSourceMappings:
    """Every enabled SQS event source of the template, polling while the runtime serves."""

    def __init__(self, sources: Iterable[SqsEventSource], client: SqsClient, invoker: Invoker, say: Say) -> None:
        self._client = client
        self.pollers = [SqsPoller(source, client, invoker, say) for source in sources if source.enabled]

    def start(self) -> None:
        """Start every poller."""
        for poller in self.pollers:
            poller.start()

    async def stop(self) -> None:
        """Stop every poller and close the SQS connections."""
        await asyncio.gather(*(poller.stop() for poller in self.pollers), return_exceptions=True)
        with contextlib.suppress(aiohttp.ClientError):
            await self._client.close()
