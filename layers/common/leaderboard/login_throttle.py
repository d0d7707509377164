"""Login throttling per account and per client address, shared by every Lambda instance (DynamoDB).

Each login attempt first reserves a slot in three counters of the current window: the account from this
address, the account from anywhere, and the address. The reservation is one conditional transaction, taken before
the password is checked, so parallel guesses cannot slip past a limit; a successful login gives its slots back,
so only failures add up. Past a limit, logins get 429 with Retry-After until the window ends.

The tight limit is per account *and* address: an attacker guessing from one address cannot lock the owner out
from another. The account-wide limit is ten times higher, so a distributed attack is still slowed down, and even
then the owner is locked out for at most what remains of a window at a time. Unknown usernames are counted like
known ones, so throttling reveals nothing about which accounts exist.
"""

import contextlib
import ipaddress
import time
from dataclasses import dataclass
from typing import Any

from leaderboard.aws import dynamodb
from leaderboard.config import settings

WINDOW_SECONDS = 15 * 60
ACCOUNT_FROM_ADDRESS_LIMIT = 10
ACCOUNT_LIMIT = 100
# Players behind one NAT or carrier gateway share an address: this limit is for one host guessing many accounts.
ADDRESS_LIMIT = 100

clock = time.time
"""Wall-clock seconds; tests move it to cross a window."""


class Throttled(Exception):
    """Too many failed logins; try again in `retry_after` seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(retry_after)
        self.retry_after = retry_after


@dataclass(frozen=True)
class Reservation:
    """The counter slots one login attempt holds until it succeeds (given back) or fails (kept)."""

    keys: tuple[str, ...]


def reserve(account: str, address: str) -> Reservation:
    """Take one attempt from each counter of this window, all or none; Throttled if any is used up."""
    now = clock()
    window = int(now // WINDOW_SECONDS)
    window_ends = (window + 1) * WINDOW_SECONDS
    network = _network(address)
    limits = {
        f"account-from#{account}#{network}#{window}": ACCOUNT_FROM_ADDRESS_LIMIT,
        f"account#{account}#{window}": ACCOUNT_LIMIT,
        f"address#{network}#{window}": ADDRESS_LIMIT,
    }
    expires = {"N": str(window_ends + WINDOW_SECONDS)}  # the table's TTL: counters clean themselves up
    client = dynamodb()
    try:
        client.transact_write_items(
            TransactItems=[
                _counter_update(
                    key,
                    "ADD attempts :one SET expires_at = :expires",
                    "attribute_not_exists(attempts) OR attempts < :limit",
                    {":one": {"N": "1"}, ":limit": {"N": str(limit)}, ":expires": expires},
                )
                for key, limit in limits.items()
            ]
        )
    except client.exceptions.TransactionCanceledException:
        raise Throttled(retry_after=max(1, window_ends - int(now))) from None
    return Reservation(keys=tuple(limits))


def release(reservation: Reservation) -> None:
    """Give the slots of a successful login back: only failures count against the limits."""
    client = dynamodb()
    # The counters outlive the login by a whole window; should one be gone anyway, there is nothing to give back.
    with contextlib.suppress(client.exceptions.TransactionCanceledException):
        client.transact_write_items(
            TransactItems=[
                _counter_update(
                    key, "ADD attempts :minus_one", "attempts > :zero", {":minus_one": {"N": "-1"}, ":zero": {"N": "0"}}
                )
                for key in reservation.keys
            ]
        )


def _counter_update(key: str, update: str, condition: str, values: dict[str, Any]) -> Any:
    return {
        "Update": {
            "TableName": settings.login_attempts_table,
            "Key": {"counter_key": {"S": key}},
            "UpdateExpression": update,
            "ConditionExpression": condition,
            "ExpressionAttributeValues": values,
        }
    }


def _network(address: str) -> str:
    """The unit an address is counted by: the address itself for IPv4, its /64 for IPv6 (one host's share)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if ip.version == 6:
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)
