"""The boards' query values: whole strings only (a trailing newline is no number)."""

import pytest

from leaderboard import standings
from leaderboard.problems import InvalidRequest


@pytest.mark.parametrize("text", ["5\n", "5 ", " 5", "+5", "5.0", "1e2", "", "101", "0"])
def test_a_limit_that_is_not_a_whole_number_in_range_is_400(text: str) -> None:
    with pytest.raises(InvalidRequest):
        standings.page_bounds({"limit": text})


def test_a_whole_number_in_range_is_taken() -> None:
    assert standings.page_bounds({"offset": "20", "limit": "100"}) == (20, 100)
