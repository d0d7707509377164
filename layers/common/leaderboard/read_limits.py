"""The limit on the public reads (the boards' standings), per client address, counted in Redis.

The reads run next to Redis and write nothing: a counter in DynamoDB would add a write to every read, so each read
counts itself in Redis instead (`board.count_in_window`: one round trip, a key of its own per address and window).
If Redis does not answer, the read is let through uncounted: the limit must not turn a hiccup into refusals (the
read itself then answers 503 if it needs Redis).
"""

from aws_lambda_powertools import Logger

from leaderboard import rate_limits
from leaderboard.board import BoardUnavailable, count_in_window
from leaderboard.config import settings
from leaderboard.problems import TooManyRequests
from leaderboard.rate_limits import Limit, client_network
from leaderboard.security_events import SecurityEvent, record

READ_WINDOW_SECONDS = 60

logger = Logger(child=True)


def limit_reads(address: str) -> None:
    """Count a public read from `address`; 429 with Retry-After past the address's limit. The first refusal of a
    window is recorded as a security event, the ones after it are not (see SecurityEvent.READS_THROTTLED)."""
    limit = Limit("reads", settings.reads_per_address_per_minute, READ_WINDOW_SECONDS)
    now = rate_limits.clock()
    expires_at_ms = (limit.window_ends(now) + READ_WINDOW_SECONDS) * 1000  # a window to spare for clocks that differ
    try:
        count = count_in_window(limit.name, client_network(address), limit.window(now), expires_at_ms)
    except BoardUnavailable:
        logger.warning("read not counted: Redis did not answer")
        return
    if count <= limit.allowed:
        return
    if count == limit.allowed + 1:
        record(SecurityEvent.READS_THROTTLED, user="", address=address, limit=limit.name)
    raise TooManyRequests("Too many requests from your network; try again later.", retry_after=limit.retry_after(now))
