"""`make redrive` (scripts/redrive.py) in-process: players' changes that reached the dead-letter queue while Redis was
unreachable go back to ScoresQueue and reach the boards once; redriving twice, or a change already applied, counts
nothing twice; what is no change is reported and left (or deleted when asked); a dry run changes nothing; a message
whose copy the queue refused, or whose delete failed, stays in the dead-letter queue, visible to the next run; a run
that comes round to what it read stops; what stops a run is the error reported, and what it held is visible again."""

import json
import os
from pathlib import Path
from typing import Any
from unittest import mock

import boto3
import pytest
from botocore.exceptions import ClientError

from leaderboard import board
from leaderboard.scores import PlayerChanged
from scripts import redrive
from tests.integration.conftest import Game, Stack

INVALID = ("not json", '{"not": "a change"}')


def queues(game: Game) -> redrive.Queues:
    return redrive.Queues(game.dead_letter_url, game.queue_url)


def dead_letters(game: Game) -> list[str]:
    """The bodies in the dead-letter queue (looked at, and left visible)."""
    seen: list[Any] = []
    while messages := game.stack.sqs.receive_message(
        QueueUrl=game.dead_letter_url, MaxNumberOfMessages=10, VisibilityTimeout=30
    ).get("Messages", []):
        seen += messages
    for message in seen:
        game.stack.sqs.change_message_visibility(
            QueueUrl=game.dead_letter_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
        )
    return sorted(message["Body"] for message in seen)


def fail_into_the_dead_letter_queue(game: Game) -> list[str]:
    """Deliver what is queued while Redis is unreachable until SQS moves it to the dead-letter queue (after its 5
    receives); the bodies that went there."""
    bodies = [message["Body"] for message in game.receive(visibility_timeout=0)]
    with mock.patch.dict(os.environ, {"REDIS_URL": "redis://127.0.0.1:1/0"}):  # nothing listens on port 1
        while messages := game.receive(visibility_timeout=0):
            with pytest.raises(board.BoardUnavailable):
                game.deliver(messages)
    return bodies


def redriven_while_the_first_entry_fails(
    game: Game, monkeypatch: pytest.MonkeyPatch, operation: str, code: str
) -> tuple[redrive.Summary, list[str]]:
    """Alice's 30 and Bob's 20 in the dead-letter queue, redriven while the batch `operation` (send or delete) leaves
    its first entry out and answers it as SQS answers one that failed; the summary, and the bodies."""
    alice, bob = game.player("alice"), game.player("bob")
    game.score(alice, 30)
    game.score(bob, 20)
    bodies = fail_into_the_dead_letter_queue(game)
    batch_call = getattr(game.stack.sqs, operation)

    def failing_the_first(**request: Any) -> Any:
        first, *rest = request["Entries"]
        answer = batch_call(**(request | {"Entries": rest}))
        return answer | {"Failed": [{"Id": first["Id"], "Code": code, "SenderFault": False, "Message": "try again"}]}

    monkeypatch.setattr(game.stack.sqs, operation, failing_the_first)
    summary = redrive.redrive(game.stack.sqs, queues(game))
    monkeypatch.undo()
    return summary, bodies


def sent_to_the_dead_letter_queue(game: Game, bodies: list[str]) -> None:
    for body in bodies:
        game.stack.sqs.send_message(QueueUrl=game.dead_letter_url, MessageBody=body)


def test_changes_that_reached_the_dead_letter_queue_go_back_and_reach_the_board_once(game: Game) -> None:
    alice, bob = game.player("alice"), game.player("bob")
    game.score(alice, 40)
    game.score(alice, 2)
    game.score(bob, 25)
    bodies = fail_into_the_dead_letter_queue(game)
    assert game.top() == [], "the board missed them"
    said: list[str] = []

    summary = redrive.redrive(game.stack.sqs, queues(game), say=said.append)
    game.drain()

    assert (summary.read, summary.sent_back, summary.invalid, summary.failures) == (3, 3, 0, [])
    assert said == []
    assert dead_letters(game) == []
    assert [(entry["user_id"], entry["score"]) for entry in game.top()] == [(alice.user_id, 42), (bob.user_id, 25)]
    assert (game.total(alice), game.total(bob)) == (42, 25)
    assert len(bodies) == 3


def test_redriving_twice_or_a_change_already_applied_counts_nothing_twice(game: Game) -> None:
    alice = game.player("alice")
    game.score(alice, 70)
    bodies = fail_into_the_dead_letter_queue(game)
    redrive.redrive(game.stack.sqs, queues(game))
    game.drain()

    again = redrive.redrive(game.stack.sqs, queues(game))  # nothing left: the second run sends nothing
    sent_to_the_dead_letter_queue(game, bodies * 2)  # and the applied change twice more, after alice scored again
    game.score(alice, 5)
    game.drain()
    twice = redrive.redrive(game.stack.sqs, queues(game))
    game.drain()

    assert (again.read, again.sent_back) == (0, 0)
    assert (twice.read, twice.sent_back) == (2, 2)
    assert game.total(alice) == 75
    assert [(entry["user_id"], entry["score"]) for entry in game.top()] == [(alice.user_id, 75)]
    assert {s.user_id: s.score for s in game.board("weekly").page(0, 10)} == {alice.user_id: 75}
    assert {s.user_id: s.score for s in game.board("daily-best").page(0, 10)} == {alice.user_id: 70}


def test_a_message_that_is_no_change_is_reported_and_left_unless_deleting_is_asked(game: Game) -> None:
    alice = game.player("alice")
    game.score(alice, 9)
    fail_into_the_dead_letter_queue(game)
    sent_to_the_dead_letter_queue(game, list(INVALID))
    said: list[str] = []

    left = redrive.redrive(game.stack.sqs, queues(game), say=said.append)
    game.drain()

    assert (left.sent_back, left.invalid, left.deleted_invalid) == (1, 2, 0)
    assert [line.split(": ", 1)[0] for line in said] == ["invalid", "invalid"]
    assert "'not json'" in "\n".join(said)
    assert "left 2 invalid" in left.report(dry_run=False, delete_invalid=False)
    assert dead_letters(game) == sorted(INVALID), "left, and visible again"
    assert game.top()[0]["score"] == 9

    deleted = redrive.redrive(game.stack.sqs, queues(game), delete_invalid=True)

    assert (deleted.read, deleted.sent_back, deleted.deleted_invalid) == (2, 0, 2)
    assert dead_letters(game) == []


def test_a_dry_run_sends_and_deletes_nothing(game: Game) -> None:
    alice = game.player("alice")
    game.score(alice, 12)
    fail_into_the_dead_letter_queue(game)
    sent_to_the_dead_letter_queue(game, [INVALID[0]])

    summary = redrive.redrive(game.stack.sqs, queues(game), dry_run=True, delete_invalid=True)

    assert (summary.read, summary.valid, summary.invalid, summary.sent_back, summary.deleted_invalid) == (2, 1, 1, 0, 0)
    assert "1 to send back, 1 invalid" in summary.report(dry_run=True, delete_invalid=True)
    assert game.receive(visibility_timeout=0) == []
    assert len(dead_letters(game)) == 2
    assert game.top() == []


def test_a_change_whose_copy_the_queue_refused_stays_in_the_dead_letter_queue(
    game: Game, monkeypatch: pytest.MonkeyPatch
) -> None:
    summary, bodies = redriven_while_the_first_entry_fails(
        game, monkeypatch, "send_message_batch", "KMS.ThrottlingException"
    )

    assert (summary.sent_back, len(summary.failures)) == (1, 1)
    assert "not sent back (KMS.ThrottlingException)" in summary.failures[0]
    assert len(dead_letters(game)) == 1, "kept, and visible again for the next run"
    assert sorted([*dead_letters(game), *(m["Body"] for m in game.receive(visibility_timeout=0))]) == sorted(bodies)


def test_the_command_line_redrives_given_queues_and_refuses_a_half_given_pair(
    game: Game, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    alice = game.player("alice")
    game.score(alice, 8)
    fail_into_the_dead_letter_queue(game)

    code = redrive.main(["--dead-letter-queue-url", game.dead_letter_url, "--queue-url", game.queue_url])
    game.drain()

    assert code == 0
    assert "read 1: sent back 1" in capsys.readouterr().out
    assert game.top()[0]["score"] == 8
    with pytest.raises(SystemExit) as usage:
        redrive.main(["--queue-url", game.queue_url])
    assert usage.value.code == 2
    with mock.patch.dict(os.environ, {"LOCAL_STATE_DIR": str(tmp_path)}):
        assert redrive.main([]) == 2, "no local stack runs there"
    assert "no local stack is running" in capsys.readouterr().err


def test_a_deployed_stack_s_queues_are_found_by_the_stack_s_name(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    queues = {"Resources": {name: {"Type": "AWS::SQS::Queue"} for name in ("ScoresQueue", "ScoresDeadLetterQueue")}}
    boto3.client("cloudformation").create_stack(StackName="leaderboard-prod", TemplateBody=json.dumps(queues))
    found = redrive.deployed_queues("leaderboard-prod", None)
    change = PlayerChanged("a-player", 3, (("global", "all"),), 1_700_000_000_000).message()
    stack.sqs.send_message(QueueUrl=found.dead_letter_url, MessageBody=change)

    assert redrive.main(["--stack-name", "leaderboard-prod"]) == 0

    assert "read 1: sent back 1" in capsys.readouterr().out
    assert [message["Body"] for message in stack.sqs.receive_message(QueueUrl=found.queue_url)["Messages"]] == [change]
    assert redrive.main(["--stack-name", "no-such-stack"]) == 2
    assert "no-such-stack" in capsys.readouterr().err


def test_a_change_sent_back_whose_delete_failed_is_visible_again_for_the_next_run(
    game: Game, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, bodies = redriven_while_the_first_entry_fails(game, monkeypatch, "delete_message_batch", "InternalError")
    again = redrive.redrive(game.stack.sqs, queues(game))  # at once, as the summary says: it is there to be read
    game.drain()

    assert (first.read, first.sent_back, len(first.failures)) == (2, 2, 1)
    assert "sent back but not deleted (InternalError)" in first.failures[0]
    assert "run again" in first.report(dry_run=False, delete_invalid=False)
    assert (again.read, again.sent_back, again.failures) == (1, 1, [])
    assert dead_letters(game) == []
    assert len(bodies) == 2
    assert [entry["score"] for entry in game.top()] == [30, 20], "each counted once"


def test_a_run_that_comes_round_to_messages_it_read_stops_and_counts_each_once(
    game: Game, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice = game.player("alice")
    game.score(alice, 9)
    fail_into_the_dead_letter_queue(game)
    sent_to_the_dead_letter_queue(game, list(INVALID))
    # A hold that is over at once: what the run leaves comes back to it, as on a queue too long to read within
    # HOLD_SECONDS.
    monkeypatch.setattr(redrive, "HOLD_SECONDS", 0)
    real_receive = game.stack.sqs.receive_message
    receives = 0

    def counted(**request: Any) -> Any:
        nonlocal receives
        receives += 1
        assert receives <= 20, "the run went round and round"
        return real_receive(**request)

    monkeypatch.setattr(game.stack.sqs, "receive_message", counted)
    said: list[str] = []
    summary = redrive.redrive(game.stack.sqs, queues(game), say=said.append)
    monkeypatch.undo()
    game.drain()

    assert (summary.read, summary.sent_back, summary.invalid, summary.came_round) == (3, 1, 2, True)
    assert len(said) == 2, "each invalid message reported once"
    assert "came round to messages it had read" in summary.report(dry_run=False, delete_invalid=False)
    assert dead_letters(game) == sorted(INVALID)
    assert game.top()[0]["score"] == 9


def test_the_error_that_stops_a_run_is_the_one_raised_and_what_it_held_is_visible_again(
    game: Game, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    sent_to_the_dead_letter_queue(game, list(INVALID))
    real_receive = game.stack.sqs.receive_message
    receives = 0

    def fail_the_second(**request: Any) -> Any:
        nonlocal receives
        receives += 1
        if receives == 2:
            raise ClientError({"Error": {"Code": "ServiceUnavailable", "Message": "down"}}, "ReceiveMessage")
        return real_receive(**request)

    def fail(**request: Any) -> Any:
        raise ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "ChangeMessageVisibilityBatch")

    monkeypatch.setattr(game.stack.sqs, "receive_message", fail_the_second)
    with pytest.raises(ClientError, match="ServiceUnavailable"):
        redrive.redrive(game.stack.sqs, queues(game))
    assert dead_letters(game) == sorted(INVALID), "what it held is visible again at once"

    receives = 0
    monkeypatch.setattr(game.stack.sqs, "change_message_visibility_batch", fail)
    with pytest.raises(ClientError, match="ServiceUnavailable") as stopped:
        redrive.redrive(game.stack.sqs, queues(game))
    monkeypatch.undo()
    assert stopped.value.__notes__ == [
        f"and the 2 messages it held stay invisible for up to {redrive.HOLD_SECONDS} s: "
        "An error occurred (AccessDenied) when calling the ChangeMessageVisibilityBatch operation: no"
    ]
    with mock.patch.object(redrive, "redrive", side_effect=stopped.value):
        assert redrive.main(["--dead-letter-queue-url", game.dead_letter_url, "--queue-url", game.queue_url]) == 1
    said = capsys.readouterr().err
    assert "ServiceUnavailable" in said
    assert "stay invisible" in said
