"""What a player does between starting an action and scoring it: play it for the game's minimum duration."""

import time
from datetime import datetime
from typing import Any


def seconds_until_scorable(action: dict[str, Any]) -> float:
    """How long until the action's `scorable_at` (none on the local runtime's `match`, 20 s on the template's)."""
    scorable_at = datetime.fromisoformat(str(action["scorable_at"]).replace("Z", "+00:00")).timestamp()
    return max(0.0, scorable_at - time.time())


def wait_until_scorable(action: dict[str, Any]) -> None:
    """Sleep until the action can be scored: posted sooner, its score would be refused (422)."""
    time.sleep(seconds_until_scorable(action))
