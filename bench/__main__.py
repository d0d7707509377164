"""`make bench`: run every benchmark side by side in one run, then write bench/results.json and BENCHMARKS.md."""

import json
import platform
from datetime import UTC, datetime
from pathlib import Path

from bench import aws_requests, board_fill, board_scale, board_throughput, cold_start, live_push, login_timing

ROOT = Path(__file__).parent.parent
AUTHORIZER_BUDGET_MS = 150
APPLY_VS_RAW_TARGET = 0.5
TOP10_VS_RAW_TARGET = 0.7
READ_P99_TARGET_MS = 2
AWS_REQUESTS_TARGET = 4
PUSH_P99_TARGET_MS = {1000: 500, 10_000: 2000}
PUBLISHER_WORK_TOLERANCE = 0.2


def main() -> None:
    print("==> cold import time per function (median of fresh processes)", flush=True)
    results = cold_start.run()
    print("==> failed-login timing: existing username vs unknown username (interleaved)", flush=True)
    results |= login_timing.run()
    for name in ("login_wrong_password_ms_median", "login_unknown_user_ms_median", "login_unknown_over_wrong_ratio"):
        print(f"  {name:<34} {results[name]}", flush=True)
    print("==> DynamoDB and SQS requests per accepted score (in-process stack, moto)", flush=True)
    requests = aws_requests.run()
    results |= requests
    _show(requests, *(f"aws_requests_per_score{variant}" for variant in ("", "_with_idempotency_key")))
    print(f"==> the board's Redis paths beside plain redis-py, side by side ({board_fill.REDIS_URL})", flush=True)
    throughput = board_throughput.run()
    results |= throughput
    _show(throughput, *throughput)
    print(f"==> the board's reads with {board_scale.PLAYERS:,} players (BENCH_PLAYERS)", flush=True)
    scale = board_scale.run()
    results |= scale
    _show(scale, *scale)
    print(
        "==> the live feed on the local runtime: 1, 1,000 and 10,000 subscribers; the publisher's work; cost",
        flush=True,
    )
    pushes = live_push.run()
    results |= pushes
    _show(pushes, *pushes)
    (ROOT / "bench" / "results.json").write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    write_report(results)
    print("==> wrote bench/results.json and BENCHMARKS.md")


def _show(results: dict[str, float], *names: str) -> None:
    for name in names:
        print(f"  {name:<45} {results[name]}", flush=True)


def _verdict(met: bool) -> str:
    return "meets" if met else "MISSES"


def write_report(results: dict[str, float]) -> None:
    boto3_ms = results["cold_import_ms_boto3_reference"]
    functions = sorted(
        name.removeprefix("cold_import_ms_")
        for name in results
        if name.startswith("cold_import_ms_") and name != "cold_import_ms_boto3_reference"
    )
    rows = "\n".join(
        f"| {function} | {results[f'cold_import_ms_{function}']:.1f} |"
        f" {'yes' if results.get(f'cold_import_loads_boto3_{function}') else 'no'} |"
        for function in functions
    )
    eager = [function for function in functions if results.get(f"cold_import_loads_boto3_{function}")]
    eager_note = (
        f"These import boto3 at import time, so their figures include it: {', '.join(eager)}."
        if eager
        else "None imports boto3 at import time."
    )
    authorizer = results["cold_import_ms_AuthorizeFunction"]
    verdict = _verdict(authorizer < AUTHORIZER_BUDGET_MS)
    players = int(results["board_players"])
    command = "make bench" if players == board_scale.DEFAULT_PLAYERS else f"BENCH_PLAYERS={players} make bench"
    (ROOT / "BENCHMARKS.md").write_text(
        f"""# Benchmarks

Produced by `{command}` on {datetime.now(UTC):%Y-%m-%d} (Python {platform.python_version()} on {platform.machine()},
a shared 2-core machine). Such machines are noisy: what is compared is measured side by side in one run, and the
figures are medians (or p99s, where said); compare ratios, not absolute values across runs.

## Cold start: import time of each function

Each function's handler module imported by a fresh `python -S` whose path holds only what Lambda gives it: the
function's code, the layer's package, the layer's third-party packages (installed for this CPU from
`layers/common/requirements.txt`) and the runtime's boto3. Milliseconds, median of {cold_start.RUNS} fresh processes.

| function | cold import (ms) | imports boto3 |
|---|---|---|
{rows}
| boto3 alone, for scale | {boto3_ms:.1f} | |

The authorizer runs on nearly every request; its budget is {AUTHORIZER_BUDGET_MS} ms: it **{verdict}** it at
{authorizer:.1f} ms ({authorizer / boto3_ms:.2f}x boto3's import). It imports no AWS SDK: the signing key comes
from the Parameters and Secrets extension over localhost HTTP. boto3 is part of the Lambda runtime, not of the
layer: a function that imports it lazily, at its first AWS call, pays its import once per cold start on top of the
figure above. {eager_note}

## Login: an unknown username must cost what a wrong password costs

Failed logins through the real login handler with the stack in-process (moto), {login_timing.ROUNDS} of each,
interleaved (alternating which goes first), medians:

| case | median (ms) |
|---|---|
| existing username, wrong password | {results["login_wrong_password_ms_median"]:.2f} |
| unknown username | {results["login_unknown_user_ms_median"]:.2f} |
| ratio unknown / wrong | {results["login_unknown_over_wrong_ratio"]:.3f} |

Both paths reserve their throttle slots, read the account and verify an argon2id hash (a decoy with the same
parameters when the account does not exist); a ratio near 1 means the timing does not tell them apart.
{_aws_requests_section(results)}{_board_sections(results)}{_live_section(results)}"""
    )


def _aws_requests_section(results: dict[str, float]) -> str:
    plain, keyed = "aws_requests_per_score", "aws_requests_per_score_with_idempotency_key"
    rows = []
    for stage in aws_requests.STAGES:
        prefixes = (f"{plain}_{stage}_", f"{keyed}_{stage}_")
        operations = sorted(
            {name.removeprefix(prefix) for prefix in prefixes for name in results if name.startswith(prefix)}
        )
        for operation in operations:
            without, with_key = (results.get(f"{prefix}{operation}", 0) for prefix in prefixes)
            rows.append(f"| {stage.replace('_', ' ')} | {operation} | {without:.2f} | {with_key:.2f} |")
    table = "\n".join(rows)
    return f"""
## AWS requests per accepted score

{aws_requests.PLAYERS} players post {aws_requests.ROUNDS} scores each through POST /v1/scores's handler, then the
queue is drained as Lambda's SQS event source drains it (ReceiveMessage of up to {aws_requests.BATCH}, the consumer
invoked with the batch, DeleteMessageBatch), all in-process with moto and the real Redis. Every DynamoDB and SQS
request is counted (botocore's `BaseClient._make_api_call`, which every client's every call goes through) and
divided by the accepted scores; the event source's empty polls are left out (they cost per second, not per score).

| stage | request | per score | per score, with Idempotency-Key |
|---|---|---|---|
{table}
| **total** | | **{results[plain]:.2f}** | **{results[keyed]:.2f}** |

Target: at most {AWS_REQUESTS_TARGET} requests per score. Without an Idempotency-Key the path
**{_verdict(results[plain] <= AWS_REQUESTS_TARGET)}** it at {results[plain]:.2f}; with one it
**{_verdict(results[keyed] <= AWS_REQUESTS_TARGET)}** it at {results[keyed]:.2f}. The key's cost is Powertools'
idempotency record, written before the score is accepted (in progress) and again after (the response to replay):
the post's requests are the ones that grow. Starting the action the score is for (POST /v1/actions) is a request of
its own, before the score: {results["aws_requests_per_action"]:.2f} per action, not in the totals above.
"""


def _board_sections(results: dict[str, float]) -> str:
    apply_ratio, top_ratio = results["apply_vs_raw_ratio"], results["top10_vs_raw_ratio"]
    top_p99, rank_p99 = results["top10_p99_ms_10m"], results["rank_p99_ms_10m"]
    players, fill_s = int(results["board_players"]), results["board_fill_s"]
    bytes_per_player = results["redis_bytes_per_player_10m"]
    return f"""
## The exactly-once apply path beside plain ZINCRBY

Score events written to Redis by `Board.set_totals` as the consumer writes them (one call of the version-gated Lua
script per batch of {board_throughput.BATCH} players' totals) and by a pipeline of
{board_throughput.BATCH} plain ZINCRBY (redis-py): the same stream of events onto an empty board each, on the same
Redis, side by side: {board_throughput.BLOCKS} blocks of {board_throughput.BLOCK_BATCHES * board_throughput.BATCH}
events each, the order rotating every block; medians of the per-block rates. Both end with the same totals (checked).

| path | score events/s |
|---|---|
| `Board.set_totals` (version-gated Lua, batches of {board_throughput.BATCH}) | {results["apply_redis_per_s"]:,.0f} |
| plain pipelined ZINCRBY (batches of {board_throughput.BATCH}) | {results["raw_zincrby_pipelined_per_s"]:,.0f} |
| ratio | {apply_ratio:.3f} |

Target: a ratio of at least {APPLY_VS_RAW_TARGET}; the apply path **{_verdict(apply_ratio >= APPLY_VS_RAW_TARGET)}**
it. Beyond ZINCRBY, the script makes four or five Redis calls per event (HGET, ZREM, ZADD, two HSET). An earlier
version called the script once per event in a pipeline; redis-py then also sent SCRIPT EXISTS before every
pipeline, and the ratio was 0.40-0.42.

## The top-10 read beside plain redis-py

`Board.top()` (one Lua call: ZREVRANGE 0 9 WITHSCORES and HMGET of the names, decoded into standings) beside one
redis-py pipeline of ZREVRANGE 0 9 WITHSCORES and HMGET of ten names, one round trip. A plain client cannot know the
names to ask for before the ZREVRANGE answers, so that baseline reuses the ids of its previous read: a floor. The
correct plain read, two round trips, is shown for scale. One board of {board_throughput.TOP_PLAYERS:,} players;
{board_throughput.BLOCKS} blocks of {board_throughput.BLOCK_READS} reads each, the order rotating every block;
medians of the per-block rates.

| read | reads/s |
|---|---|
| `Board.top()` | {results["top10_read_per_s"]:,.0f} |
| plain pipeline, one round trip (the floor) | {results["raw_top10_per_s"]:,.0f} |
| ratio | {top_ratio:.3f} |
| plain, two round trips (for scale) | {results["raw_top10_two_round_trips_per_s"]:,.0f} |

Target: a ratio of at least {TOP10_VS_RAW_TARGET}; the project's read **{_verdict(top_ratio >= TOP10_VS_RAW_TARGET)}**
it.

## Reads with {players:,} players on the board

A board of its own filled with {players:,} players in `leaderboard.board`'s layout (big pipelined ZADD/HSET:
{fill_s:.1f} s, {players / fill_s:,.0f} players/s), checked with the project's own reads and writes, then
{board_scale.SAMPLES:,} calls of each read, alternating, one at a time; standings of players drawn at random.
Milliseconds from the call to the decoded answer (client, loopback, Redis).

| read | median (ms) | p99 (ms) |
|---|---|---|
| `Board.top()` (GET /v1/scores) | {results["top10_p50_ms_10m"]:.3f} | {top_p99:.3f} |
| `Board.standing(user_id)` (GET /v1/scores/{{user_id}}) | {results["rank_p50_ms_10m"]:.3f} | {rank_p99:.3f} |

Target: p99 at most {READ_P99_TARGET_MS} ms. The top 10 **{_verdict(top_p99 <= READ_P99_TARGET_MS)}** it, a
player's standing **{_verdict(rank_p99 <= READ_P99_TARGET_MS)}** it. Memory: {bytes_per_player:.0f} bytes per player
(INFO used_memory, after minus before, over the players: the ranking sorted set, the players hash and the names
hash, with 32-character ids), so {bytes_per_player * 10_000_000 / 2**30:.1f} GiB for 10 million players.
"""


def _within(first: float, second: float, tolerance: float) -> bool:
    return abs(first - second) <= tolerance * max(first, second)


def _live_section(results: dict[str, float]) -> str:
    rows = "\n".join(
        f"| {clients:,} | {results[f'push_latency_p50_ms_{clients}_clients']:.0f} |"
        f" {results[f'push_latency_p99_ms_{clients}_clients']:.0f} | {samples} |"
        for clients, samples in live_push.SAMPLES.items()
    )
    verdicts = ", ".join(
        f"{target:,} ms at {clients:,} subscribers, which this run **{_verdict(p99 <= target)}** ({p99:.0f} ms)"
        for clients, target in PUSH_P99_TARGET_MS.items()
        for p99 in [results[f"push_latency_p99_ms_{clients}_clients"]]
    )
    few, many = live_push.WORK_SUBSCRIBERS
    requests = [results[f"publisher_requests_per_change_{n}_subscribers"] for n in (few, many)]
    cpu = [results[f"publisher_cpu_ms_per_change_{n}_subscribers"] for n in (few, many)]
    work_met = _within(requests[0], requests[1], PUBLISHER_WORK_TOLERANCE) and _within(
        cpu[0], cpu[1], PUBLISHER_WORK_TOLERANCE
    )
    cost_rows = "\n".join(
        f"| {viewers:,} | {real:,} | {results[f'live_publishes_per_hour_{viewers}_viewers']:,.0f} |"
        f" {results[f'live_deliveries_per_hour_{viewers}_viewers']:,.0f} |"
        f" ${results[f'live_usd_per_hour_{viewers}_viewers']:.2f} |"
        for viewers, real in live_push.COST_VIEWERS.items()
    )
    return f"""
## The live feed (local runtime, AppSync Events emulated)

`python -m local` as `make run` starts it. Subscribers are AppSync Events clients (`clients/event_api.py`), one
connection each, subscribed to `/boards/global` as `anonymous` through the authorizer and the onSubscribe handler.

**Push latency**: milliseconds from the 202 of POST /v1/scores to each subscriber's receipt of the top 10 holding
the new total: SQS, ApplyScores, the board's lease, BoardChangesQueue, PublishBoard (snapshot, audience, standings),
LiveEventsQueue, PublishEvents (SigV4, HTTP), the Event API, the socket. One warm-up score first; then one sample per
score, every subscriber counted, each score made once no publisher is at work. That is the path's own latency: while
a board keeps changing, a change also waits for the budget's next cycle, up to 1 / the board's rate (0.25 s up to
250 viewers, 1 s at 1,000, 5 s from 5,000 at the defaults), by design.

| subscribers | p50 (ms) | p99 (ms) | scores |
|---|---|---|---|
{rows}

Targets: p99 at most {verdicts}.
The emulator writes one frame per subscriber from one Python process and the
10,000 clients read them in the benchmark's process, on the same two cores: at 10,000 the receiving side, not the
design, is most of the time. On AWS the fan-out is AppSync's (up to 1,000,000 deliveries a second per API).

**The publisher's own work per board change** (PublishBoard and PublishEvents together, {live_push.WORK_CHANGES}
changes made one at a time): AWS requests counted from their logs (SQS requests, HTTP publishes), CPU from their worker
processes (`/proc/<pid>/task/*/schedstat`, every thread).

| subscribers | AWS requests per change | CPU ms per change |
|---|---|---|
| {few:,} | {requests[0]:.2f} | {cpu[0]:.2f} |
| {many:,} | {requests[1]:.2f} | {cpu[1]:.2f} |

Target: equal within {PUBLISHER_WORK_TOLERANCE:.0%} at {few:,} and at {many:,} subscribers; this run
**{_verdict(work_met)}** it. Per change: one SendMessageBatch (the cycle's publishes) and one signed publish of the
top 10, whatever the audience; the old design posted once per connection (1.2-1.4 ms of boto3 CPU each).

**What an hour costs** at the default budget (`LiveDeliveriesPerHour` 3,600,000, 0.2 to 4 publishes a second),
with the board changing all the time (a scorer posting as fast as it can for {live_push.COST_SECONDS} s; publishes
and deliveries from the emulator's meter, scaled to an hour). The audience counter is set to the scenario's viewers;
deliveries measured on the real subscribers are scaled to the viewers. Priced at $1 per million AppSync operations
(each publish, each delivery, and per viewer an hour: one connect, {live_push.SUBSCRIPTIONS_PER_VIEWER_HOUR}
subscriptions and their {live_push.SUBSCRIPTIONS_PER_VIEWER_HOUR} onSubscribe invocations) and $0.08 per million
connection-minutes. Lambda's own charges for the onSubscribe invocations (about $0.25 an hour per 100,000 viewers)
and the publishers are not included.

| viewers | real subscribers | publishes / hour | deliveries / hour | AppSync $ / hour |
|---|---|---|---|---|
{cost_rows}

With 1,000 viewers the budget sets one publish a second (1,000 deliveries a second, its cap); with 100,000 the floor
(one every 5 s) wins over the budget, and the deliveries, the bill, grow with the audience. A board that does not
change costs only its connections and renewals.
"""


if __name__ == "__main__":
    main()
