"""Pieces of the score path that need no AWS or Redis: queue messages and request bodies."""

import json

import pytest
from pydantic import ValidationError

from leaderboard.bodies import MAX_EXACT_INTEGER, PostScoreBody
from leaderboard.scores import PlayerChanged, PoisonMessage

CHANGE = PlayerChanged("u1", 7, (("global", "all"), ("weekly", "2026-W49")), 1_795_795_200_000)


def test_a_change_travels_through_the_queue_unchanged() -> None:
    assert PlayerChanged.parse(CHANGE.message()) == CHANGE


@pytest.mark.parametrize(
    "body",
    [
        "not json",
        "[]",
        '{"not": "a change"}',
        json.dumps({"user_id": "u1", "rev": "7", "seasons": [], "sent_at_ms": 1}),
        json.dumps({"user_id": "u1", "rev": 7.5, "seasons": [], "sent_at_ms": 1}),
        json.dumps({"user_id": "u1", "rev": True, "seasons": [], "sent_at_ms": 1}),
        json.dumps({"user_id": 1, "rev": 7, "seasons": [], "sent_at_ms": 1}),
        json.dumps({"user_id": "", "rev": 7, "seasons": [], "sent_at_ms": 1}),
        json.dumps({"user_id": "u1", "rev": 7, "seasons": [3], "sent_at_ms": 1}),
        json.dumps({"user_id": "u1", "rev": 7, "seasons": "global/all", "sent_at_ms": 1}),
        json.dumps({"user_id": "u1", "rev": 7, "seasons": [], "sent_at_ms": None}),
    ],
)
def test_a_message_that_is_no_change_is_poison(body: str) -> None:
    with pytest.raises(PoisonMessage):
        PlayerChanged.parse(body)


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
