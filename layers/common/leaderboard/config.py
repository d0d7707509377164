"""The one module that reads the environment.

Values are read when used, never at import, so tests can set the environment at any time.
"""

import os


class ConfigurationError(RuntimeError):
    """A variable the function needs is missing from its environment (a template or deployment mistake)."""


def _require(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise ConfigurationError(f"environment variable {name} is not set; template.yaml gives it to the function")
    return value


def _limit(name: str) -> int:
    value = _require(name)
    if not (value.isascii() and value.isdigit() and int(value) >= 1):
        raise ConfigurationError(f"environment variable {name} must be a whole number of at least 1, not {value!r}")
    return int(value)


class Settings:
    """What template.yaml tells a function. Each function reads only the variables it was given."""

    @property
    def jwt_issuer(self) -> str:
        return _require("JWT_ISSUER")

    @property
    def jwt_audience(self) -> str:
        return _require("JWT_AUDIENCE")

    @property
    def signing_key_secret_id(self) -> str:
        return _require("SIGNING_KEY_SECRET_ARN")

    @property
    def users_table(self) -> str:
        return _require("USERS_TABLE")

    @property
    def display_names_table(self) -> str:
        # The display names held, by look-alike key (users.py claims them with the account).
        return _require("DISPLAY_NAMES_TABLE")

    @property
    def token_families_table(self) -> str:
        return _require("TOKEN_FAMILIES_TABLE")

    @property
    def rate_limits_table(self) -> str:
        # The DynamoDB counters of the rate limits per client (rate_limits.py): logins and registrations.
        return _require("RATE_LIMITS_TABLE")

    @property
    def actions_table(self) -> str:
        return _require("ACTIONS_TABLE")

    @property
    def player_totals_table(self) -> str:
        return _require("PLAYER_TOTALS_TABLE")

    @property
    def idempotency_table(self) -> str:
        return _require("IDEMPOTENCY_TABLE")

    @property
    def scores_queue_url(self) -> str:
        return _require("SCORES_QUEUE_URL")

    @property
    def redis_url(self) -> str:
        return _require("REDIS_URL")

    @property
    def redis_cluster(self) -> bool:
        # "true": a cluster-aware client (a node-based cluster-mode cache; the tests' local cluster). ElastiCache
        # Serverless needs none: it shows every slot on one endpoint (see board.py).
        value = os.environ.get("REDIS_CLUSTER", "").lower()
        if value not in ("", "false", "true"):
            raise ConfigurationError(f"environment variable REDIS_CLUSTER must be true or false, not {value!r}")
        return value == "true"

    @property
    def redis_iam_user(self) -> str:
        # The ElastiCache user that connects with IAM auth; empty (a local Redis): no auth.
        return os.environ.get("REDIS_IAM_USER", "")

    @property
    def cache_name(self) -> str:
        # The ElastiCache serverless cache an IAM auth token is signed for.
        return _require("CACHE_NAME")

    @property
    def game(self) -> str:
        # The game's action types and boards, one JSON document (leaderboard/game.py reads it).
        return _require("GAME")

    @property
    def moderation_audit_table(self) -> str:
        return _require("MODERATION_AUDIT_TABLE")

    @property
    def redis_key_prefix(self) -> str:
        # Every Redis key starts with it; tests give each test a prefix of its own.
        return os.environ.get("REDIS_KEY_PREFIX") or "leaderboard"

    @property
    def season_archive_table(self) -> str:
        return _require("SEASON_ARCHIVE_TABLE")

    @property
    def board_changes_queue_url(self) -> str:
        return _require("BOARD_CHANGES_QUEUE_URL")

    @property
    def live_events_queue_url(self) -> str:
        return _require("LIVE_EVENTS_QUEUE_URL")

    @property
    def event_api_url(self) -> str:
        # The Event API's HTTP endpoint: https://{Dns.Http}/event
        return _require("EVENT_API_URL")

    @property
    def live_deliveries_per_hour(self) -> float:
        return float(_require("LIVE_DELIVERIES_PER_HOUR"))

    @property
    def live_min_publishes_per_second(self) -> float:
        return float(_require("LIVE_MIN_PUBLISHES_PER_SECOND"))

    @property
    def live_max_publishes_per_second(self) -> float:
        return float(_require("LIVE_MAX_PUBLISHES_PER_SECOND"))

    # Rate limits per client (rate_limits.py, login_throttle.py, read_limits.py); template.yaml's parameters say what
    # each one counts.
    @property
    def registrations_per_address_per_hour(self) -> int:
        return _limit("REGISTRATIONS_PER_ADDRESS_PER_HOUR")

    @property
    def login_failures_per_account_from_address(self) -> int:
        return _limit("LOGIN_FAILURES_PER_ACCOUNT_FROM_ADDRESS")

    @property
    def login_failures_per_account(self) -> int:
        return _limit("LOGIN_FAILURES_PER_ACCOUNT")

    @property
    def login_failures_per_address(self) -> int:
        return _limit("LOGIN_FAILURES_PER_ADDRESS")

    @property
    def login_failures_per_device(self) -> int:
        return _limit("LOGIN_FAILURES_PER_DEVICE")

    @property
    def reads_per_address_per_minute(self) -> int:
        return _limit("READS_PER_ADDRESS_PER_MINUTE")

    @property
    def aws_region(self) -> str:
        # Lambda sets AWS_REGION; AWS_DEFAULT_REGION elsewhere.
        return os.environ.get("AWS_REGION") or _require("AWS_DEFAULT_REGION")

    @property
    def secrets_extension_port(self) -> int:
        # The AWS Parameters and Secrets Lambda Extension listens on this port (its own default is 2773).
        return int(os.environ.get("PARAMETERS_SECRETS_EXTENSION_HTTP_PORT", "2773"))

    @property
    def secrets_extension_token(self) -> str:
        # The extension only answers requests that carry the function's session token.
        return _require("AWS_SESSION_TOKEN")


settings = Settings()
