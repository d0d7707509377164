"""Rate limits per client, counted in fixed windows; and the limit on registrations.

A `Limit` allows so many requests (or failures) per window for each subject it counts: a client's address (an IPv6
address by its /56, see `client_network`), an account, a device. Windows are fixed and aligned on the epoch, so a
counter is one number under a key naming its window, and a client refused is told exactly when it may try again
(Retry-After: the end of the window). The price of one number per client is the edge of the window: a client can
spend one window's allowance at its very end and the next one's at the start of the next.

Counters live next to the work they guard:
- in DynamoDB (`take`, `give_back`), for routes that write there anyway (login, registration): one conditional write
  takes a slot from every counter a request counts against, all or none, *before* the work, so parallel requests
  cannot slip past a limit. Items expire through the table's TTL a window after theirs ends;
- in Redis, for the public reads, which run next to it (read_limits.py, with `board.count_in_window`).

What each route counts lives with the route's logic: registrations here, logins in login_throttle.py, reads in
read_limits.py. The numbers come from the environment (template.yaml's parameters, `config.settings`).
"""

import ipaddress
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from leaderboard.aws import dynamodb
from leaderboard.config import settings
from leaderboard.problems import TooManyRequests
from leaderboard.security_events import SecurityEvent, record

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import UpdateTypeDef

# Many ISPs hand each customer a /56 (RIPE-690): counted per /64, one home could spread its requests over 256
# networks and get 256 times every limit. The price: hosts that share a /56 share its limits.
IPV6_NETWORK_PREFIX = 56
# A transaction cancelled only by a concurrent one on the same counter (two logins at once) is tried again.
_CONFLICT_ATTEMPTS = 3

clock = time.time
"""Wall-clock seconds; tests move it to cross a window."""


@dataclass(frozen=True)
class Limit:
    """`allowed` requests per window of `window_seconds` for each subject counted. `name` starts every counter's key
    and names the limit in logs."""

    name: str
    allowed: int
    window_seconds: int

    def window(self, now: float) -> int:
        """The number of the window `now` falls in (windows start at the epoch, one after the other)."""
        return int(now // self.window_seconds)

    def window_ends(self, now: float) -> int:
        """The moment (epoch seconds) the window `now` falls in ends."""
        return (self.window(now) + 1) * self.window_seconds

    def retry_after(self, now: float) -> int:
        """Whole seconds until the window `now` falls in ends: at least 1, at most the window."""
        return max(1, math.ceil(self.window_ends(now) - now))


@dataclass(frozen=True)
class Counter:
    """One limit's count for one subject (an address's network, an account, a device)."""

    limit: Limit
    subject: str

    def key(self, now: float) -> str:
        # The subject may hold "#" (usernames at login are any string); the window, last, never does.
        return f"{self.limit.name}#{self.subject}#{self.limit.window(now)}"


class LimitReached(Exception):
    """A request went past the limits named in `limits`; it may be tried again in `retry_after` seconds."""

    def __init__(self, limits: tuple[str, ...], retry_after: int) -> None:
        super().__init__(", ".join(limits), retry_after)
        self.limits = limits
        self.retry_after = retry_after


@dataclass(frozen=True)
class Taken:
    """The counter slots one request holds (their DynamoDB keys), to be given back if it turns out not to count."""

    keys: tuple[str, ...]


def client_network(address: str) -> str:
    """What an address is counted by: an IPv4 address itself (an IPv4-mapped IPv6 address too), an IPv6 address its
    /56. Anything else (API Gateway always sends an address) counts as itself."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if ip.version == 4:
        return str(ip)
    if ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ipaddress.ip_network(f"{ip}/{IPV6_NETWORK_PREFIX}", strict=False))


def take(counters: Sequence[Counter]) -> Taken:
    """Take one slot from each counter in its current window, all or none; LimitReached (naming the limits that are
    used up, and when the last of them frees) if any counter is full."""
    now = clock()
    expires = {"N": str(max(counter.limit.window_ends(now) + counter.limit.window_seconds for counter in counters))}
    updates = [
        _update(
            counter.key(now),
            "ADD attempts :one SET expires_at = :expires",  # expires_at: the table's TTL, so counters clean up
            "attribute_not_exists(attempts) OR attempts < :allowed",
            {":one": {"N": "1"}, ":allowed": {"N": str(counter.limit.allowed)}, ":expires": expires},
        )
        for counter in counters
    ]
    client = dynamodb()
    for _ in range(_CONFLICT_ATTEMPTS):
        try:
            _write(updates)
            return Taken(keys=tuple(counter.key(now) for counter in counters))
        except client.exceptions.ConditionalCheckFailedException:
            raise _reached(counters, now) from None
        except client.exceptions.TransactionCanceledException as cancelled:
            codes = [reason.get("Code") for reason in cancelled.response.get("CancellationReasons", [])]
            full = [counter for counter, code in zip(counters, codes, strict=False) if code == "ConditionalCheckFailed"]
            if full or "TransactionConflict" not in codes:
                raise _reached(full or counters, now) from None
    # Still contended: refused rather than let through uncounted, and told to try again at once.
    raise LimitReached(limits=tuple(counter.limit.name for counter in counters), retry_after=1)


def give_back(taken: Taken) -> None:
    """Give the slots back (the request turned out not to count, e.g. a successful login)."""
    client = dynamodb()
    # A counter outlives its request by a whole window; should one be gone anyway, there is nothing to give back.
    try:
        _write(
            [
                _update(
                    key, "ADD attempts :minus_one", "attempts > :zero", {":minus_one": {"N": "-1"}, ":zero": {"N": "0"}}
                )
                for key in taken.keys
            ]
        )
    except (client.exceptions.ConditionalCheckFailedException, client.exceptions.TransactionCanceledException):
        return


def _update(key: str, update: str, condition: str, values: dict[str, Any]) -> "UpdateTypeDef":
    return {
        "TableName": settings.rate_limits_table,
        "Key": {"counter_key": {"S": key}},
        "UpdateExpression": update,
        "ConditionExpression": condition,
        "ExpressionAttributeValues": values,
    }


def _write(updates: list["UpdateTypeDef"]) -> None:
    # One counter: a plain conditional write (1 write unit); several: a transaction (2 units each), all or none.
    if len(updates) == 1:
        dynamodb().update_item(**updates[0])
    else:
        dynamodb().transact_write_items(TransactItems=[{"Update": update} for update in updates])


def _reached(counters: Sequence[Counter], now: float) -> LimitReached:
    return LimitReached(
        limits=tuple(counter.limit.name for counter in counters),
        retry_after=max(counter.limit.retry_after(now) for counter in counters),
    )


# --- registrations -----------------------------------------------------------------------------------------------

REGISTRATION_WINDOW_SECONDS = 3600


def limit_registrations(address: str) -> None:
    """Count an attempt to register from `address` (before its password is hashed: each attempt costs that work, and
    a 409 tells which usernames exist); 429 past the address's limit, recorded as a security event."""
    limit = Limit("register", settings.registrations_per_address_per_hour, REGISTRATION_WINDOW_SECONDS)
    try:
        take([Counter(limit, client_network(address))])
    except LimitReached as reached:
        record(SecurityEvent.REGISTRATION_THROTTLED, user="", address=address, limit=limit.name)
        raise TooManyRequests(
            "Too many accounts were created from your network; try again later.", retry_after=reached.retry_after
        ) from None
