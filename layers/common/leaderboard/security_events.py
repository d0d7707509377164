"""Security events: logged with the player and the client's address (never a token or a password) and counted as
CloudWatch metrics (embedded metric format, printed at once), which the template's alarms watch."""

from enum import StrEnum

from aws_lambda_powertools import Logger
from aws_lambda_powertools.metrics import MetricUnit, single_metric

# The metrics' namespace; their one dimension is `service` (POWERTOOLS_SERVICE_NAME, in template.yaml's Globals).
NAMESPACE = "Leaderboard"

logger = Logger(child=True)


class SecurityEvent(StrEnum):
    FAILED_LOGIN = "FailedLogin"  # a wrong password (or an unknown user), at login or at a password change
    LOGIN_THROTTLED = "LoginThrottled"  # a login or a password change refused with 429
    REGISTRATION_THROTTLED = "RegistrationThrottled"  # an attempt to register refused with 429 (too many from there)
    # An address went past its limit on the public reads: counted once per address and window, not per refused read,
    # so a flood of reads cannot turn into a flood of log lines.
    READS_THROTTLED = "ReadsThrottled"
    REFRESH_TOKEN_REUSE = "RefreshTokenReuse"  # noqa: S105 - a metric name. A spent refresh token presented again
    FARMING_REFUSED = "FarmingRefused"  # an action or a score refused by the game's fair-play limits
    BANNED_PLAYER_REFUSED = "BannedPlayerRefused"  # a banned player tried to start an action or post a score
    MODERATION = "Moderation"  # an operator removed points, banned or unbanned a player (address: their IAM ARN)


def record(event: SecurityEvent, *, user: str, address: str, limit: str | None = None) -> None:
    """Log the event and count it. `user` names the player (a user id, or the username tried at login; "" if there is
    none); `limit`, for a refusal by a rate limit, names the limit."""
    details = {"security_event": str(event), "user": user, "address": address}
    if limit is not None:
        details["limit"] = limit
    logger.warning("security event", extra=details)
    with single_metric(name=str(event), unit=MetricUnit.Count, value=1, namespace=NAMESPACE):
        pass  # printed when the block ends
