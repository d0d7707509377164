"""What a score update costs in AWS, all-in, and what the stack costs a month at the reference load.

Computed, not measured against a bill (no AWS account is reachable from here): the requests, write units and read
units that `aws_requests` counts per score, times AWS's published prices (PRICES, us-east-1, with where they come
from). What the benchmarks cannot count is an assumption, named and explained in ASSUMPTIONS: Lambda's billed
durations, how often the authorizer's cache misses, the audience of the live feed.

Two ways to pay for DynamoDB, both reported:
- on demand (the template's default: nothing to size, $0 when idle, absorbs a spike at once);
- provisioned with auto scaling (`PlayerTotalsCapacity` in template.yaml): at a steady load like the reference one,
  capacity that tracks the load at 70 % utilization costs 2.4 times less per write.
The headline figure, `usd_per_million_scores`, is the reference load's: provisioned, HTTP API requests past the first
300 million of the month at the lower tier. "Before" is the design as it stood before this part was written (issue
10: 6 write units and 2 read units per score), priced the same way.
"""

import json
from collections.abc import Mapping
from dataclasses import dataclass

from bench import ROOT

MILLION = 1_000_000
MONTH_SECONDS = 730 * 3600  # AWS prices a month as 730 hours
MONTH_HOURS = 730

# us-east-1, USD. As published on each service's pricing page (aws.amazon.com/<service>/pricing) and known to us on
# 2026-11-30; this machine cannot reach them, so they were not re-read today. DESIGN.md §7 lists the first four.
PRICES = {
    "http_api_per_million": 1.00,  # first 300 million requests a month
    "http_api_per_million_after_300m": 0.90,
    "dynamodb_on_demand_per_million_writes": 0.625,  # write request units (1 KB each; 2 per item in a transaction)
    "sqs_per_million": 0.40,  # standard queue, per 64 KB chunk of a request
    "dynamodb_on_demand_per_million_reads": 0.125,  # read request units (4 KB strongly consistent)
    "dynamodb_wcu_hour": 0.00065,  # provisioned
    "dynamodb_rcu_hour": 0.00013,
    "lambda_per_million_requests": 0.20,
    "lambda_arm64_gb_second": 0.0000133334,
    "elasticache_valkey_serverless_gb_hour": 0.0837,  # data stored (100 MB minimum)
    "elasticache_valkey_serverless_per_million_ecpu": 0.0023,
    "appsync_events_per_million_operations": 1.00,  # every publish and every delivery
    "appsync_events_per_million_connection_minutes": 0.08,
    "vpc_interface_endpoint_az_hour": 0.01,
    "kms_key_month": 1.00,
    "secrets_manager_secret_month": 0.40,
    "cloudwatch_logs_per_gb": 0.50,  # ingested
    "xray_per_million_traces": 5.00,  # recorded
    "cloudwatch_alarm_month": 0.10,
    "dynamodb_gb_month": 0.25,  # storage
    "dynamodb_pitr_gb_month": 0.20,
}


@dataclass(frozen=True)
class Assumption:
    value: float
    why: str


ASSUMPTIONS = {
    "memory_gb": Assumption(0.25, "the template's 256 MB for every function on the score path"),
    "start_action_ms": Assumption(12, "billed ms of StartAction: one UpdateItem (about 5-8 ms in region), the rest"),
    "post_score_ms": Assumption(25, "billed ms of PostScore: GetItem, SendMessage and UpdateItem in turn"),
    "authorizer_ms": Assumption(3, "billed ms of the authorizer: an HMAC check, no AWS call"),
    "apply_scores_ms_per_batch": Assumption(60, "billed ms of ApplyScores per batch: one BatchGetItem, the scripts"),
    "authorizer_calls_per_score": Assumption(
        0.75,
        "a score is 2 requests; API Gateway caches an allow 240 s per token: a player finishing a match every 3 "
        "minutes makes 2.7 requests per 240 s, one of which calls the authorizer",
    ),
    "catch_up_read_units_per_score": Assumption(
        0.25,
        "the consumer reads a batch before some of its writes have landed (they follow the send by milliseconds) and "
        "reads those players again after a pause: about a quarter of them, once",
    ),
    "system_log_bytes_per_invocation": Assumption(
        0, "Lambda's START/END/REPORT lines (about 350 bytes) are dropped: SystemLogLevel WARN in the template"
    ),
    "app_log_bytes_per_request": Assumption(
        0, "StartAction and PostScore log at DEBUG: the access log names the route, the status and the player"
    ),
    "app_log_bytes_per_batch": Assumption(400, "an INFO line: the consumer's, once per batch; a login's"),
    "access_log_bytes_per_request": Assumption(300, "the HTTP API's JSON access log line"),
    "xray_sampled_share": Assumption(
        0.05, "TracingMode Active: Lambda samples the first request a second, then 5 % (not configurable per function)"
    ),
    "ecpu_per_score": Assumption(5, "the consumer's scripts, about 1.5 per season written per batch, per score"),
    "viewers_average": Assumption(20_000, "100,000 at peak; average = peak / 5, as scores (2,500 / 500)"),
    "live_floor_per_second": Assumption(0.2, "LiveMinPublishesPerSecond: past 5,000 viewers the floor sets the rate"),
    "boards_on_show": Assumption(3, "the template's three boards, each changing all the time at this load"),
    "board_gb": Assumption(
        10,
        "Redis: about 110 bytes a member (the sorted set's 75 and the players' hash) for 20 M all-time players, "
        "4 readable weeks of 10 M and 7 readable days of 5 M",
    ),
    "reads_per_second": Assumption(50, "top-10 reads (GET /v1/scores), the reference load's"),
    "read_ms": Assumption(8, "billed ms of a read: two Redis round trips"),
    "logins_per_player_day": Assumption(1, "one login a day per daily player"),
    "refreshes_per_player_day": Assumption(3, "access tokens live 10 minutes: 30 minutes of play"),
    "login_ms": Assumption(80, "billed ms of a login at 512 MB: argon2id at OWASP's parameters, 3 DynamoDB calls"),
    "refresh_ms": Assumption(15, "billed ms of a refresh: a transaction on the token family"),
    "auth_write_units": Assumption(
        4, "a login's throttle reservation and token family; a refresh's 2-item transaction"
    ),
    "auth_read_units": Assumption(2, "a login reads the account and its device's family; a refresh its family"),
    "personal_pushes_per_second": Assumption(
        1_000,
        "per board, the players watching their own standing told of each move: at the budget's cap "
        "(LiveDeliveriesPerHour = 3.6 M an hour), each one publish and one delivery; an upper bound",
    ),
    "publisher_gb_seconds_per_second": Assumption(0.5, "per board on show, PublishBoard (512 MB) working all the time"),
    "alarms": Assumption(20, "the template's alarms, $0.10 a month each"),
    "ledger_gb": Assumption(15, "DynamoDB: 20 M players' items of about 0.7 KB, stored and backed up (PITR)"),
}

REFERENCE = {"scores_per_second": 500, "peak_scores_per_second": 2_500, "daily_players": 5_000_000}
# Auto scaling keeps provisioned capacity about this far above what is used (its target utilization).
TARGET_UTILIZATION = 0.7
# The design before (issue 10), as bench/results.json recorded it then: 6 write units per score (the action's write,
# a 2-item transaction, the consumer's write) and, by the same rules as today's, 2 strongly consistent read units
# (the consumer's BatchGetItem of the batch's players and actions); the same SQS and Lambda requests.
BEFORE = {"wcu": 6.0, "rcu": 2.0}


def _a(name: str) -> float:
    return ASSUMPTIONS[name].value


@dataclass(frozen=True)
class PerScore:
    """The billable units one score update uses, from aws_requests' counts."""

    http_requests: float
    lambda_invocations: float
    lambda_gb_seconds: float
    wcu: float
    rcu: float
    sqs_requests: float
    ecpu: float
    invocations_logged: float = 0.0  # Lambda invocations, each with its system log lines
    requests_logged: float = 0.0  # HTTP requests, each with an access log line and one INFO line
    batches: float = 0.0  # the consumer's invocations

    @classmethod
    def measured(cls, figures: Mapping[str, float], wcu: float | None = None, rcu: float | None = None) -> "PerScore":
        sqs_requests = sum(
            count
            for name, count in figures.items()
            if name.startswith("aws_requests_per_score_")
            and not name.startswith("aws_requests_per_score_with_")
            and name.rsplit("_", 1)[-1] in ("SendMessage", "SendMessageBatch", "ReceiveMessage", "DeleteMessageBatch")
        )
        batches = figures["aws_requests_per_score_event_source_ReceiveMessage"]  # one invocation per batch received
        catch_up = _a("catch_up_read_units_per_score")
        memory = _a("memory_gb")
        gb_seconds = (
            memory
            / 1000
            * (
                _a("start_action_ms")
                + _a("post_score_ms")
                + _a("authorizer_calls_per_score") * _a("authorizer_ms")
                + batches * _a("apply_scores_ms_per_batch")
            )
        )
        return cls(
            http_requests=2,  # POST /v1/actions, POST /v1/scores: the contract's
            lambda_invocations=2 + _a("authorizer_calls_per_score") + batches,
            lambda_gb_seconds=gb_seconds,
            wcu=figures["dynamodb_wcu_per_score_3_boards"] if wcu is None else wcu,
            rcu=figures["dynamodb_rcu_per_score_3_boards"] + catch_up if rcu is None else rcu,
            sqs_requests=sqs_requests,
            ecpu=_a("ecpu_per_score"),
            invocations_logged=2 + _a("authorizer_calls_per_score") + batches,
            requests_logged=2,
            batches=batches,
        )

    def observability_usd_per_million(self) -> float:
        """Logs and traces: per request, though not among the services the target names."""
        log_bytes = (
            self.invocations_logged * _a("system_log_bytes_per_invocation")
            + self.requests_logged * (_a("app_log_bytes_per_request") + _a("access_log_bytes_per_request"))
            + self.batches * _a("app_log_bytes_per_batch")
        )
        logs = log_bytes / 1e9 * MILLION * PRICES["cloudwatch_logs_per_gb"]
        traces = self.requests_logged * _a("xray_sampled_share") * PRICES["xray_per_million_traces"]
        return logs + traces

    def usd_per_million(self, provisioned: bool, http_price: float) -> dict[str, float]:
        if provisioned:
            wcu_price = PRICES["dynamodb_wcu_hour"] / 3600 / TARGET_UTILIZATION * MILLION
            rcu_price = PRICES["dynamodb_rcu_hour"] / 3600 / TARGET_UTILIZATION * MILLION
        else:
            wcu_price = PRICES["dynamodb_on_demand_per_million_writes"]
            rcu_price = PRICES["dynamodb_on_demand_per_million_reads"]
        return {
            "api_gateway": self.http_requests * http_price,
            "lambda": self.lambda_invocations * PRICES["lambda_per_million_requests"]
            + self.lambda_gb_seconds * PRICES["lambda_arm64_gb_second"] * MILLION,
            "dynamodb": self.wcu * wcu_price + self.rcu * rcu_price,
            "sqs": self.sqs_requests * PRICES["sqs_per_million"],
            "elasticache": self.ecpu * PRICES["elasticache_valkey_serverless_per_million_ecpu"],
            # The scores' own publishes: at most 4 top-10 publishes a second per board whatever the score rate, so
            # per score ~0 at this load; deliveries are the audience's (the month's bill below).
            "appsync": 0.0,
        }


def _blended_http_price(requests_per_month: float) -> float:
    """The month's HTTP API price per million requests: the first 300 million at one price, the rest at another."""
    first = min(requests_per_month, 300 * MILLION)
    rest = requests_per_month - first
    total = first * PRICES["http_api_per_million"] + rest * PRICES["http_api_per_million_after_300m"]
    return total / requests_per_month


def run(measured: Mapping[str, float] | None = None) -> dict[str, float]:
    """USD per million score updates (reference load, on demand, before), and per month at the reference load."""
    figures = measured if measured and "dynamodb_rcu_per_score_3_boards" in measured else _recorded()
    if "dynamodb_rcu_per_score_3_boards" not in figures:
        raise SystemExit("no read units per score in bench/results.json: run `python -m bench aws_requests cost`")
    now, before = PerScore.measured(figures), PerScore.measured(figures, **BEFORE)
    scores = REFERENCE["scores_per_second"] * MONTH_SECONDS
    daily_players = REFERENCE["daily_players"]
    auth_requests = daily_players * (_a("logins_per_player_day") + _a("refreshes_per_player_day")) * 730 / 24
    reads = _a("reads_per_second") * MONTH_SECONDS
    http_price = _blended_http_price(scores * now.http_requests + reads + auth_requests)
    results: dict[str, float] = {}
    for name, per_score, provisioned, price in (
        ("", now, True, http_price),
        ("_on_demand", now, False, PRICES["http_api_per_million"]),
        ("_before", before, True, http_price),
        ("_before_on_demand", before, False, PRICES["http_api_per_million"]),
    ):
        parts = per_score.usd_per_million(provisioned, price)
        results[f"usd_per_million_scores{name}"] = round(sum(parts.values()), 2)
        for part, usd in parts.items():
            results[f"usd_per_million_scores{name}_{part}"] = round(usd, 3)
    results["usd_per_million_scores_logs_and_traces"] = round(now.observability_usd_per_million(), 2)
    results |= _month(now, scores, reads, auth_requests, http_price)
    results["usd_cost_target_per_million_scores"] = 4.0
    return results


def _month(now: PerScore, scores: float, reads: float, auth_requests: float, http_price: float) -> dict[str, float]:
    """The reference load's month, by line."""
    lambda_second, memory = PRICES["lambda_arm64_gb_second"], _a("memory_gb")
    per_request = http_price + PRICES["lambda_per_million_requests"]  # $ per million: the API's and the function's
    log_gb = PRICES["cloudwatch_logs_per_gb"] / 1e9
    read_usd = reads / MILLION * per_request + reads * _a("read_ms") / 1000 * memory * lambda_second
    logins = (
        auth_requests * _a("logins_per_player_day") / (_a("logins_per_player_day") + _a("refreshes_per_player_day"))
    )
    auth_usd = (
        auth_requests / MILLION * per_request
        + logins * _a("login_ms") / 1000 * 0.5 * lambda_second  # PasswordHashingMemorySize: 512 MB
        + (auth_requests - logins) * _a("refresh_ms") / 1000 * memory * lambda_second
        # the users', token families' and rate limits' tables are on demand
        + auth_requests * _a("auth_write_units") / MILLION * PRICES["dynamodb_on_demand_per_million_writes"]
        + auth_requests * _a("auth_read_units") / MILLION * PRICES["dynamodb_on_demand_per_million_reads"]
    )
    viewers, floor, boards = _a("viewers_average"), _a("live_floor_per_second"), _a("boards_on_show")
    # Each viewer gets the floor's deliveries of one board; each board is published at that rate; the watching
    # players' own pushes are a publish and a delivery each.
    operations = (viewers + boards) * floor + boards * 2 * _a("personal_pushes_per_second")
    live_usd = (
        operations * MONTH_SECONDS / MILLION * PRICES["appsync_events_per_million_operations"]
        + viewers * 60 * MONTH_HOURS / MILLION * PRICES["appsync_events_per_million_connection_minutes"]
        + boards * _a("publisher_gb_seconds_per_second") * MONTH_SECONDS * lambda_second
    )
    fixed_usd = (
        _a("board_gb") * MONTH_HOURS * PRICES["elasticache_valkey_serverless_gb_hour"]
        + 2 * MONTH_HOURS * PRICES["vpc_interface_endpoint_az_hour"]  # the SQS endpoint, two zones
        + 2 * PRICES["kms_key_month"]  # DataKey, OpsKey
        + PRICES["secrets_manager_secret_month"]
        + _a("alarms") * PRICES["cloudwatch_alarm_month"]
        + _a("ledger_gb") * (PRICES["dynamodb_gb_month"] + PRICES["dynamodb_pitr_gb_month"])
    )
    other_requests = reads + auth_requests  # each an access log line, a function's lines and maybe a trace
    # A login or a refresh logs one INFO line (an audit of who got tokens); a read, none.
    other_log_bytes = (reads + auth_requests) * (
        _a("access_log_bytes_per_request") + _a("system_log_bytes_per_invocation")
    ) + auth_requests * _a("app_log_bytes_per_batch")
    observability_usd = (
        now.observability_usd_per_million() * scores / MILLION
        + other_log_bytes * log_gb
        + other_requests * _a("xray_sampled_share") / MILLION * PRICES["xray_per_million_traces"]
    )
    lines = {
        "score_updates": sum(now.usd_per_million(True, http_price).values()) * scores / MILLION,
        "top10_reads": read_usd,
        "logins_and_refreshes": auth_usd,
        "live_feed": live_usd,
        "fixed": fixed_usd,
        "logs_and_traces": observability_usd,
    }
    results: dict[str, float] = {f"usd_per_month_reference_{line}": round(usd) for line, usd in lines.items()}
    results["usd_per_month_reference"] = round(sum(lines.values()))
    results["usd_per_million_scores_fully_loaded"] = round(sum(lines.values()) / scores * MILLION, 2)
    results["reference_scores_per_month_millions"] = round(scores / MILLION)
    return results


def _recorded() -> dict[str, float]:
    """The figures bench/results.json holds (when this part runs alone)."""
    return dict(json.loads((ROOT / "bench" / "results.json").read_text()))
