"""What every e2e player does between starting an action and scoring it: play it for the game's minimum duration."""

import time
from datetime import datetime
from typing import Any


def wait_until_scorable(action: dict[str, Any]) -> None:
    """Sleep until the action's `scorable_at` (no wait on the local runtime's `match`, 20 s on the template's)."""
    scorable_at = datetime.fromisoformat(str(action["scorable_at"]).replace("Z", "+00:00")).timestamp()
    time.sleep(max(0.0, scorable_at - time.time()))
