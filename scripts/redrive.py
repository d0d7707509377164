"""``make redrive``: the players' changes that reached ScoresQueue's dead-letter queue, back to ScoresQueue (DEPLOY.md,
section 7).

A message there says "this player's ledger reached `rev`: bring the boards up to it", and got there after 5 failed
receives (Redis unreachable for minutes, a bug since fixed), or because it is no change at all. The tool

1. reads the dead-letter queue 10 messages at a time, each held invisible while it works on it, until the queue is
   empty or gives back only messages this run has read (on a queue that takes longer than HOLD_SECONDS to read, those
   it left come back: it stops there rather than go round for ever);
2. checks every body. A valid change goes back to ScoresQueue as it is: the consumer writes the ledger's totals, never
   an increment, and a board keeps a write only if it moves the player up, so a change already applied, or sent back
   twice, counts nothing twice (and one whose score was never written is dropped by the consumer, as it would have
   been). A body that is no change can never be applied: it is reported and left, or deleted with --delete-invalid;
3. deletes a message from the dead-letter queue only once ScoresQueue has accepted its copy (one whose delete then
   fails is left, and sent again by the next run: harmless, as above);
4. makes what it left visible again (also when it stops on an error), and prints a summary.

--dry-run reads and reports only. The queues: the running local stack's (`make run`: .local/stack.json, or
$LOCAL_STATE_DIR's), or a deployed stack's, found by --stack-name in CloudFormation, or given as --dead-letter-queue-url
and --queue-url (with the environment's AWS credentials and region). Exit status: 0 when every valid change went back,
1 when one could not (it stays in the dead-letter queue: run again), 2 for a usage error.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import botocore.exceptions

from leaderboard.scores import PlayerChanged, PoisonMessage

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import MessageTypeDef

PROJECT_ROOT = Path(__file__).resolve().parent.parent
QUEUE, DEAD_LETTER_QUEUE = "ScoresQueue", "ScoresDeadLetterQueue"
# How long a message read from the dead-letter queue stays invisible to others while the tool works on it.
HOLD_SECONDS = 120
SQS_BATCH = 10  # the most messages one receive, send, delete or visibility change takes
EXCERPT = 120

Say = Callable[[str], None]


class UsageError(Exception):
    """The queues cannot be found from what the command line and the environment say."""


@dataclass(frozen=True)
class Queues:
    dead_letter_url: str
    queue_url: str


@dataclass
class Summary:
    """What a run did."""

    read: int = 0
    valid: int = 0
    sent_back: int = 0
    invalid: int = 0
    deleted_invalid: int = 0
    failures: list[str] = field(default_factory=list)  # messages that should have gone (back) and did not
    came_round: bool = False  # it stopped where the queue gave back only messages it had read

    def report(self, dry_run: bool, delete_invalid: bool) -> str:
        if dry_run:
            fate = "deleted" if delete_invalid else "left"
            return (
                f"dry run: read {self.read}: {self.valid} to send back, {self.invalid} invalid (to be {fate}); "
                "nothing was sent or deleted"
            )
        line = f"read {self.read}: sent back {self.sent_back}"
        if self.deleted_invalid:
            line += f", deleted {self.deleted_invalid} invalid"
        left = self.invalid - self.deleted_invalid
        if left:
            line += f", left {left} invalid in the dead-letter queue (--delete-invalid deletes them)"
        if self.failures:
            line += f"; {len(self.failures)} failed and stay in the dead-letter queue: run again"
        if self.came_round:
            line += "; it came round to messages it had read and stopped: run again for any it did not reach"
        return line


def redrive(
    sqs: SQSClient, queues: Queues, *, dry_run: bool = False, delete_invalid: bool = False, say: Say = print
) -> Summary:
    """Move the valid changes of the dead-letter queue back to the queue, once each; report (and with
    `delete_invalid`, delete) the rest. What it leaves is visible again when it returns, or raises."""
    summary = Summary()
    # Read and left in the dead-letter queue (or not deleted yet), by id with the newest receipt: visible again at
    # the end.
    held: dict[str, MessageTypeDef] = {}
    try:
        while messages := _receive(sqs, queues.dead_letter_url):
            again = [message for message in messages if message["MessageId"] in held]
            held |= _by_id(again)  # back after HOLD_SECONDS: only the newest receipt changes them now
            messages = [message for message in messages if message["MessageId"] not in held]
            if not messages:
                summary.came_round = True
                break
            summary.read += len(messages)
            valid: list[MessageTypeDef] = []
            invalid: list[MessageTypeDef] = []
            for message in messages:
                (valid if _is_change(message) else invalid).append(message)
            summary.valid += len(valid)
            summary.invalid += len(invalid)
            for message in invalid:
                say(f"invalid: {message['MessageId']} (received {_receives(message)} times): {_excerpt(message)}")
            held |= _by_id(messages)  # until deleted
            if dry_run:
                continue
            accepted = _send_back(sqs, queues.queue_url, valid, summary.failures)
            summary.sent_back += len(accepted)
            _delete(sqs, queues.dead_letter_url, accepted, held, summary.failures, "sent back but not deleted")
            if delete_invalid:
                summary.deleted_invalid += _delete(
                    sqs, queues.dead_letter_url, invalid, held, summary.failures, "invalid, not deleted"
                )
    except BaseException as stopped:
        try:
            _make_visible(sqs, queues.dead_letter_url, list(held.values()))
        except Exception as also:  # the error that stopped the run is the one to report
            stopped.add_note(f"and the {len(held)} messages it held stay invisible for up to {HOLD_SECONDS} s: {also}")
        raise
    _make_visible(sqs, queues.dead_letter_url, list(held.values()))
    return summary


def _by_id(messages: Sequence[MessageTypeDef]) -> dict[str, MessageTypeDef]:
    return {message["MessageId"]: message for message in messages}


def _receive(sqs: SQSClient, url: str) -> list[MessageTypeDef]:
    # A long poll (1 s) asks every server of the queue: an empty answer means the queue is empty.
    response = sqs.receive_message(
        QueueUrl=url,
        MaxNumberOfMessages=SQS_BATCH,
        WaitTimeSeconds=1,
        VisibilityTimeout=HOLD_SECONDS,
        MessageSystemAttributeNames=["ApproximateReceiveCount"],
    )
    return list(response.get("Messages", []))


def _is_change(message: MessageTypeDef) -> bool:
    try:
        PlayerChanged.parse(message.get("Body", ""))
    except PoisonMessage:
        return False
    return True


def _receives(message: MessageTypeDef) -> str:
    return message.get("Attributes", {}).get("ApproximateReceiveCount", "?")


def _excerpt(message: MessageTypeDef) -> str:
    body = message.get("Body", "")
    return repr(body[:EXCERPT]) + ("..." if len(body) > EXCERPT else "")


def _send_back(
    sqs: SQSClient, url: str, messages: Sequence[MessageTypeDef], failures: list[str]
) -> list[MessageTypeDef]:
    """Send copies of the messages' bodies to the queue; the messages whose copy it accepted."""
    if not messages:
        return []
    entries: Any = [{"Id": str(index), "MessageBody": message["Body"]} for index, message in enumerate(messages)]
    answer = sqs.send_message_batch(QueueUrl=url, Entries=entries)
    for failed in answer.get("Failed", []):
        failures.append(f"{messages[int(failed['Id'])]['MessageId']}: not sent back ({failed['Code']})")
    return [messages[int(sent["Id"])] for sent in answer.get("Successful", [])]


def _delete(
    sqs: SQSClient,
    url: str,
    messages: Sequence[MessageTypeDef],
    held: dict[str, MessageTypeDef],
    failures: list[str],
    what: str,
) -> int:
    """Delete the messages from the queue, and from those `held`; how many it deleted (the rest stay held)."""
    if not messages:
        return 0
    entries: Any = [{"Id": str(i), "ReceiptHandle": message["ReceiptHandle"]} for i, message in enumerate(messages)]
    answer = sqs.delete_message_batch(QueueUrl=url, Entries=entries)
    for failed in answer.get("Failed", []):
        failures.append(f"{messages[int(failed['Id'])]['MessageId']}: {what} ({failed['Code']})")
    deleted = [messages[int(entry["Id"])]["MessageId"] for entry in answer.get("Successful", [])]
    for message_id in deleted:
        del held[message_id]
    return len(deleted)


def _make_visible(sqs: SQSClient, url: str, messages: Sequence[MessageTypeDef]) -> None:
    for start in range(0, len(messages), SQS_BATCH):
        chunk = messages[start : start + SQS_BATCH]
        entries: Any = [
            {"Id": str(i), "ReceiptHandle": message["ReceiptHandle"], "VisibilityTimeout": 0}
            for i, message in enumerate(chunk)
        ]
        sqs.change_message_visibility_batch(QueueUrl=url, Entries=entries)


# --- where the queues are ------------------------------------------------------------------------------------------


def local_queues() -> tuple[SQSClient, Queues]:
    """The running local stack's queues, and a client of its moto."""
    from local.services import aws_session, read_running_stack  # the local runtime only when it is the target

    state_file = Path(os.environ.get("LOCAL_STATE_DIR") or PROJECT_ROOT / ".local") / "stack.json"
    endpoints = read_running_stack(state_file)
    if endpoints is None:
        raise UsageError(
            f"no local stack is running ({state_file}): start one with `make run`, "
            "or name a deployed one with --stack-name"
        )
    sqs = aws_session(endpoints.session_token).client("sqs", endpoint_url=endpoints.aws_endpoint_url)
    return sqs, Queues(endpoints.queue_urls[DEAD_LETTER_QUEUE], endpoints.queue_urls[QUEUE])


def deployed_queues(stack_name: str, region: str | None) -> Queues:
    """A deployed stack's queues, by their logical ids (an SQS queue's physical id is its URL)."""
    cloudformation = boto3.client("cloudformation", region_name=region)

    def url(logical_id: str) -> str:
        found = cloudformation.describe_stack_resource(StackName=stack_name, LogicalResourceId=logical_id)
        return str(found["StackResourceDetail"]["PhysicalResourceId"])

    return Queues(url(DEAD_LETTER_QUEUE), url(QUEUE))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.redrive",
        description="Move the players' changes in the scores dead-letter queue back to ScoresQueue, once each.",
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--stack-name", help="a deployed stack (default: the running local stack)")
    where.add_argument("--dead-letter-queue-url", help="the dead-letter queue's URL (with --queue-url)")
    parser.add_argument("--queue-url", help="ScoresQueue's URL (with --dead-letter-queue-url)")
    parser.add_argument("--region", help="the deployed stack's region (default: the environment's)")
    parser.add_argument("--dry-run", action="store_true", help="read and report; send and delete nothing")
    parser.add_argument("--delete-invalid", action="store_true", help="delete the messages that are no change")
    arguments = parser.parse_args(argv)
    if bool(arguments.dead_letter_queue_url) != bool(arguments.queue_url):
        parser.error("--dead-letter-queue-url and --queue-url go together")
    try:
        if arguments.stack_name or arguments.queue_url:
            sqs = boto3.client("sqs", region_name=arguments.region)
            queues = (
                deployed_queues(arguments.stack_name, arguments.region)
                if arguments.stack_name
                else Queues(arguments.dead_letter_queue_url, arguments.queue_url)
            )
        else:
            sqs, queues = local_queues()
    except UsageError as exc:
        print(f"redrive: {exc}", file=sys.stderr)
        return 2
    except botocore.exceptions.BotoCoreError as exc:  # no credentials, no region, unreachable
        print(f"redrive: {exc}", file=sys.stderr)
        return 2
    except botocore.exceptions.ClientError as exc:  # no such stack, no permission
        print(f"redrive: {exc.response['Error'].get('Message', exc)}", file=sys.stderr)
        return 2
    mode = "dry run: nothing is sent or deleted" if arguments.dry_run else "valid changes go back once each"
    invalid = "deleted" if arguments.delete_invalid else "reported and left"
    print(f"redrive: {queues.dead_letter_url} -> {queues.queue_url} ({mode}; invalid messages are {invalid})")
    try:
        summary = redrive(sqs, queues, dry_run=arguments.dry_run, delete_invalid=arguments.delete_invalid)
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
        # What was sent back and deleted is done; what it held was made visible again (or will be, after HOLD_SECONDS).
        print(f"redrive: stopped: {exc}", *getattr(exc, "__notes__", ()), sep="\n", file=sys.stderr)
        return 1
    for failure in summary.failures:
        print(f"failed: {failure}")
    print(summary.report(arguments.dry_run, arguments.delete_invalid))
    return 1 if summary.failures else 0


if __name__ == "__main__":
    sys.exit(main())
