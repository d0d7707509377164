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
    REFRESH_TOKEN_REUSE = "RefreshTokenReuse"  # noqa: S105 - a metric name. A spent refresh token presented again


def record(event: SecurityEvent, *, user: str, address: str) -> None:
    """Log the event and count it. `user` names the player (a user id, or the username tried at login)."""
    logger.warning("security event", extra={"security_event": str(event), "user": user, "address": address})
    with single_metric(name=str(event), unit=MetricUnit.Count, value=1, namespace=NAMESPACE):
        pass  # printed when the block ends
