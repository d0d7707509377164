"""Failed-login throttling per account and per client address, shared by every Lambda instance (DynamoDB).

Failures are counted in fixed windows of WINDOW_SECONDS. Past a limit, logins for that account (or from that
address) get 429 until the window ends, with Retry-After saying when: an attacker is slowed to a few guesses
per window, and the owner is never locked out for longer than one window. Unknown usernames are counted
like known ones, so throttling reveals nothing about which accounts exist.
"""

import time
from dataclasses import dataclass

from leaderboard.aws import dynamodb
from leaderboard.config import settings

WINDOW_SECONDS = 15 * 60
ACCOUNT_FAILURE_LIMIT = 10
# Higher: players behind one NAT or carrier gateway share an address.
ADDRESS_FAILURE_LIMIT = 50

clock = time.time
"""Wall-clock seconds; tests move it to cross a window."""


class Throttled(Exception):
    """Too many failed logins; try again in `retry_after` seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(retry_after)
        self.retry_after = retry_after


@dataclass(frozen=True)
class _Window:
    index: int
    ends_at: int


def _window(now: float) -> _Window:
    index = int(now // WINDOW_SECONDS)
    return _Window(index=index, ends_at=(index + 1) * WINDOW_SECONDS)


def _counters(account: str, address: str, window: _Window) -> dict[str, int]:
    """The counter keys of this window with their limits."""
    return {
        f"account#{account}#{window.index}": ACCOUNT_FAILURE_LIMIT,
        f"address#{address}#{window.index}": ADDRESS_FAILURE_LIMIT,
    }


def check(account: str, address: str) -> None:
    """Raise Throttled if the account or the address has used up this window's failures."""
    now = clock()
    window = _window(now)
    limits = _counters(account, address, window)
    table = settings.login_attempts_table
    request = {table: {"Keys": [{"counter_key": {"S": key}} for key in limits], "ConsistentRead": True}}
    for _ in range(3):  # DynamoDB may leave keys unprocessed under load; ask again for those
        response = dynamodb().batch_get_item(RequestItems=request)  # type: ignore[arg-type]
        for item in response["Responses"].get(table, []):
            if int(item["failures"]["N"]) >= limits[item["counter_key"]["S"]]:
                raise Throttled(retry_after=max(1, window.ends_at - int(now)))
        if not response.get("UnprocessedKeys"):
            return
        request = response["UnprocessedKeys"]  # type: ignore[assignment]


def record_failure(account: str, address: str) -> None:
    """Count one failed login against the account and the address."""
    window = _window(clock())
    client = dynamodb()
    for key in _counters(account, address, window):
        client.update_item(
            TableName=settings.login_attempts_table,
            Key={"counter_key": {"S": key}},
            UpdateExpression="ADD failures :one SET expires_at = :expires",
            ExpressionAttributeValues={":one": {"N": "1"}, ":expires": {"N": str(window.ends_at + WINDOW_SECONDS)}},
        )
