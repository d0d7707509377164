"""Login throttling per account, per client address and per device, on the rate limiter (rate_limits.py), shared by
every Lambda instance (DynamoDB).

Each login attempt first takes a slot from three counters of the current 15-minute window, in one conditional
transaction *before* the password is checked, so parallel guesses cannot slip past a limit; a successful login gives
its slots back, so only failures add up. Past a limit, logins get 429 with Retry-After until the window ends.

- The account from this address: the tight limit. An attacker guessing from one place cannot lock the owner out
  from another.
- The address (an IPv6 address by its /56): one host guessing many accounts.
- The account from anywhere, ten times the first, so a distributed attack is still slowed down. A client that
  presents a valid device token for the account (it logged in to it before: OWASP's "device cookie") does not count
  against this one, so such an attack cannot lock the owner out either. It counts against a limit of its own
  instead, so a stolen device token buys a thief a few guesses per window, not the account-wide limit's worth.

Unknown usernames are counted like known ones, so throttling reveals nothing about which accounts exist.
"""

from leaderboard.config import settings
from leaderboard.rate_limits import Counter, Limit, Taken, client_network, take

WINDOW_SECONDS = 15 * 60


def reserve(account: str, address: str, device_id: str | None = None) -> Taken:
    """Take this attempt's slots (all or none) for `account` (a username key) from `address`, and from the device
    `device_id` if the client proved one for this account; rate_limits.LimitReached if any is used up. A successful
    login gives them back (rate_limits.give_back)."""
    network = client_network(address)
    counters = [
        Counter(_limit("login-account-from", settings.login_failures_per_account_from_address), f"{account}#{network}"),
        Counter(_limit("login-address", settings.login_failures_per_address), network),
        Counter(_limit("login-device", settings.login_failures_per_device), device_id)
        if device_id
        else Counter(_limit("login-account", settings.login_failures_per_account), account),
    ]
    return take(counters)


def _limit(name: str, failures: int) -> Limit:
    return Limit(name, failures, WINDOW_SECONDS)
