"""Pieces of the score path that need no AWS or Redis: queue messages and request bodies."""

import json
from dataclasses import asdict

import pytest
from pydantic import ValidationError

from leaderboard.bodies import MAX_EXACT_INTEGER, PostScoreBody
from leaderboard.scores import AcceptedScore, PoisonMessage, parse_message

ACCEPTED = AcceptedScore("a1", "u1", "Alice", 250, 1_795_795_200_000)


def test_an_accepted_score_travels_through_the_queue_unchanged() -> None:
    assert parse_message(json.dumps(asdict(ACCEPTED))) == ACCEPTED


@pytest.mark.parametrize(
    "body",
    [
        "not json",
        "[]",
        '{"not": "a score"}',
        json.dumps({"action_id": "a1", "user_id": "u1", "display_name": "Alice", "score": "250", "accepted_at_ms": 1}),
        json.dumps({"action_id": "a1", "user_id": "u1", "display_name": "Alice", "score": 2.5, "accepted_at_ms": 1}),
        json.dumps({"action_id": "a1", "user_id": "u1", "display_name": "Alice", "score": True, "accepted_at_ms": 1}),
        json.dumps({"action_id": 1, "user_id": "u1", "display_name": "Alice", "score": 2, "accepted_at_ms": 1}),
    ],
)
def test_a_message_that_is_no_accepted_score_is_poison(body: str) -> None:
    with pytest.raises(PoisonMessage):
        parse_message(body)


@pytest.mark.parametrize("score", [1, 1000, -5, 0, MAX_EXACT_INTEGER, -MAX_EXACT_INTEGER])
def test_whole_numbers_within_2_53_parse(score: int) -> None:
    body = PostScoreBody.model_validate_json(json.dumps({"user_id": "u", "score": score, "action_id": "a"}))
    assert body.score == score


@pytest.mark.parametrize(
    "score", ["1.0", "2.5", '"7"', "true", "null", "NaN", "Infinity", "-Infinity", "1e3", str(MAX_EXACT_INTEGER + 1)]
)
def test_anything_else_is_a_type_error(score: str) -> None:
    with pytest.raises(ValidationError):
        PostScoreBody.model_validate_json(f'{{"user_id": "u", "score": {score}, "action_id": "a"}}')
