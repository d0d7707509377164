"""`make bench`: run every benchmark side by side in one run, then write bench/results.json and BENCHMARKS.md.

`python -m bench <part> [<part>...]` runs only the parts named (see PARTS) and prints their figures, writing nothing:
for working on one benchmark without the others' minutes.
"""

import json
import platform
import sys
from datetime import UTC, datetime

from bench import (
    ROOT,
    artifact_sizes,
    aws_requests,
    board_cpu,
    board_fill,
    board_scale,
    board_throughput,
    cold_start,
    cost,
    live_push,
    login_timing,
)
from leaderboard.board import PLAYER_HASHES

AUTHORIZER_BUDGET_MS = 150
POST_SCORE_BUDGET_MS = 250  # issue 11: POST /v1/scores's cold import
APPLY_VS_RAW_TARGET = 0.5
TOP10_VS_RAW_TARGET = 0.7
READ_P99_TARGET_MS = 2
AWS_REQUESTS_TARGET = 4
WCU_TARGET = 2  # per accepted score, with the template's three boards: the action's write and the score's
SERVER_CPU_RATIO_TARGET = 4  # the consumer's script per score per board, over one ZINCRBY
BYTES_PER_PLAYER_TARGET = 250  # per player per board, at 10 million players (the old layout: 450)
PUSH_P99_TARGET_MS = {1000: 500, 10_000: 2000}
PUBLISHER_WORK_TOLERANCE = 0.2


# The parts, in the order `make bench` runs them: (what it measures, its module).
PARTS = {
    "cold_start": ("cold import time per function (median of fresh processes)", cold_start),
    "artifact_sizes": (
        "unzipped size of each Lambda artifact, from `make template` (build/artifact-sizes.json)",
        artifact_sizes,
    ),
    "login_timing": ("failed-login timing: existing username vs unknown username (interleaved)", login_timing),
    "aws_requests": (
        "DynamoDB and SQS requests and DynamoDB write units per accepted score (in-process stack, moto)",
        aws_requests,
    ),
    "cost": ("USD per million score updates and per month at the reference load (from aws_requests' counts)", cost),
    "board_throughput": (
        f"the board's Redis paths beside plain redis-py, side by side ({board_fill.REDIS_URL})",
        board_throughput,
    ),
    "board_cpu": (
        f"Redis server CPU per applied score beside ZINCRBY, boards of {board_cpu.PLAYERS:,} players",
        board_cpu,
    ),
    "board_scale": (f"the board's reads and memory with {board_scale.PLAYERS:,} players (BENCH_PLAYERS)", board_scale),
    "live_push": (
        "the live feed on the local runtime: 1, 1,000 and 10,000 subscribers; the publisher's work; cost",
        live_push,
    ),
}
# Parts that print their figures themselves, as a table.
PRINT_THEIR_OWN = {"cold_start"}
# Parts computed from the figures measured before them in the same run (or bench/results.json's, run alone).
FROM_MEASURED = {"cost"}
# How a reader runs one part alone (it prints its figures and writes nothing).
ALONE = ".venv/bin/python -m bench"


def main(parts: list[str]) -> None:
    """Every part, then bench/results.json and BENCHMARKS.md; or only the parts named, their figures printed."""
    unknown = [part for part in parts if part not in PARTS]
    if unknown:
        raise SystemExit(f"unknown parts {unknown}; the parts are: {', '.join(PARTS)}")
    results: dict[str, float] = {}
    for name in parts or PARTS:
        title, module = PARTS[name]
        print(f"==> {title}", flush=True)
        figures = module.run(results) if name in FROM_MEASURED else module.run()
        results |= figures
        if name not in PRINT_THEIR_OWN:
            _show(figures, *figures)
    if parts:
        print(f"==> ran {', '.join(parts)} alone: bench/results.json and BENCHMARKS.md are left as they were")
        return
    (ROOT / "bench" / "results.json").write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    write_report(results)
    print("==> wrote bench/results.json and BENCHMARKS.md")


def _show(results: dict[str, float], *names: str) -> None:
    for name in names:
        print(f"  {name:<60} {results[name]}", flush=True)


def _verdict(met: bool) -> str:
    return "meets" if met else "MISSES"


def _command(part: str) -> str:
    """How a section's figures are produced: the whole run, or its part alone."""
    return f"Command: `make bench` (the whole run), or this part alone: `{ALONE} {part}`."


def write_report(results: dict[str, float]) -> None:
    boto3_ms = results["cold_import_ms_boto3_reference"]
    functions = sorted(
        name.removeprefix("cold_import_ms_")
        for name in results
        if name.startswith("cold_import_ms_") and name != "cold_import_ms_boto3_reference"
    )
    rows = "\n".join(
        f"| {function} | {results[f'cold_import_ms_{function}']:.1f} |"
        f" {results.get(f'cold_import_no_bytecode_ms_{function}', float('nan')):.1f} |"
        f" {'yes' if results.get(f'cold_import_loads_boto3_{function}') else 'no'} |"
        for function in functions
    )
    post_score = results["cold_import_ms_PostScoreFunction"]
    post_score_without = results.get("cold_import_no_bytecode_ms_PostScoreFunction", float("nan"))
    layer_pycs = int(results.get("cold_import_layer_pyc_files_CommonLayer", 0))
    layer_same = int(results.get("cold_import_layer_pyc_same_as_built_CommonLayer", -1))
    layer_check = (
        "no sam build was there to compare them with"
        if layer_same < 0
        else f"{layer_same} of them byte for byte the same as .aws-sam/build/CommonLayer's"
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
figures are medians (or p99s, where said); compare ratios, not absolute values across runs. `make bench` writes the
figures to bench/results.json and this file from them (bench/__main__.py); each part can also be run alone,
`{ALONE} <part>` (parts: {", ".join(f"`{part}`" for part in PARTS)}), which prints its figures and writes nothing.
`BENCH_PLAYERS=N` sets the size of the big board (default {board_scale.DEFAULT_PLAYERS:,}) for a quicker run.

## Cold start: import time of each function

Each function's handler module imported by a fresh `python -S` whose path holds only what Lambda gives it: the
function's code (no bytecode: sam build ships none), the layer and the runtime's boto3. The layer is what `sam build`
makes (layers/common/Makefile: the pinned wheels, our package, unchecked-hash bytecode for every module), built again
by the same Makefile for this CPU because the artifact's arm64 extensions cannot load here: {layer_pycs} .pyc files,
{layer_check}. "Without bytecode" is that layer less its .pyc files, as the python3.13 builder shipped it: Lambda's
/opt is read-only, so CPython then compiles every module at every cold start and keeps nothing. Milliseconds, median
of {cold_start.RUNS} fresh processes, the two layers taking turns. {_command("cold_start")}

| function | cold import (ms) | without the layer's bytecode (ms) | imports boto3 |
|---|---|---|---|
{rows}
| boto3 alone, for scale | {boto3_ms:.1f} | | |

POST /v1/scores (PostScoreFunction) must start within {POST_SCORE_BUDGET_MS} ms of imports (issue 11): it
**{_verdict(post_score <= POST_SCORE_BUDGET_MS)}** it at {post_score:.1f} ms ({post_score_without:.1f} ms without the
layer's bytecode).

The authorizer runs on nearly every request; its budget is {AUTHORIZER_BUDGET_MS} ms: it **{verdict}** it at
{authorizer:.1f} ms ({authorizer / boto3_ms:.2f}x boto3's import). It imports no AWS SDK: the signing key comes
from the Parameters and Secrets extension over localhost HTTP. boto3 is part of the Lambda runtime, not of the
layer: a function that imports it lazily, at its first AWS call, pays its import once per cold start on top of the
figure above. {eager_note}
{_artifact_sizes_section(results)}
## Login: an unknown username must cost what a wrong password costs

Failed logins through the real login handler with the stack in-process (moto), {login_timing.ROUNDS} of each,
interleaved (alternating which goes first), medians. {_command("login_timing")}

| case | median (ms) |
|---|---|
| existing username, wrong password | {results["login_wrong_password_ms_median"]:.2f} |
| unknown username | {results["login_unknown_user_ms_median"]:.2f} |
| ratio unknown / wrong | {results["login_unknown_over_wrong_ratio"]:.3f} |

Both paths reserve their throttle slots, read the account and verify an argon2id hash (a decoy with the same
parameters when the account does not exist); a ratio near 1 means the timing does not tell them apart.
{_aws_requests_section(results)}{_write_units_section(results)}{_cost_section(results)}{_board_sections(results)}{_live_section(results)}"""
    )


def _artifact_sizes_section(results: dict[str, float]) -> str:
    intro = """
## Artifact sizes: what Lambda gets, unzipped

`make template` builds every function and the layer for arm64 with `sam build` (no Docker: manylinux aarch64 wheels)
and checks what it made (tests/build): the layer's package at python/leaderboard, compiled code for aarch64,
unchecked-hash bytecode for CPython 3.13 beside every module, no tests or development files, no AWS SDK; and writes
each artifact's unzipped size to build/artifact-sizes.json, which this part reads. Run `make template` first: this
part builds nothing.
"""
    if artifact_sizes.LARGEST_WITH_LAYERS not in results:
        return f"{intro}\nNot measured in this run: there was no build/artifact-sizes.json.\n"
    # Functions built from one code folder weigh the same: artifacts of one size share a row.
    by_size: dict[float, list[str]] = {}
    for name, mb in results.items():
        if name.startswith(artifact_sizes.PREFIX) and name != artifact_sizes.LARGEST_WITH_LAYERS:
            by_size.setdefault(mb, []).append(name.removeprefix(artifact_sizes.PREFIX))
    rows = "\n".join(
        f"| {', '.join(sorted(names))} | {mb:.3f} |" for mb, names in sorted(by_size.items(), reverse=True)
    )
    largest, limit = results[artifact_sizes.LARGEST_WITH_LAYERS], results[artifact_sizes.LIMIT]
    allowance = results[artifact_sizes.ALLOWANCE]
    return f"""{intro}{_command("artifact_sizes")}

| artifact | MB unzipped |
|---|---|
{rows}

Lambda's limit is {limit:.0f} MB unzipped for a function's code and all its layers together. The largest function
with the layer weighs **{largest:.2f} MB**; with {allowance:.0f} MB allowed for the Parameters and Secrets extension
(a layer given by ARN, not measured here) it **{_verdict(largest + allowance < limit)}** the limit.
"""


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
invoked with the batch, DeleteMessageBatch), all in-process with moto and the real Redis, with the template's game
({aws_requests.TEMPLATE_BOARDS} boards). Every DynamoDB and SQS request is counted (botocore's
`BaseClient._make_api_call`, which every client's every call goes through) and divided by the accepted scores; the
event source's empty polls are left out (they cost per second, not per score). {_command("aws_requests")}

| stage | request | per score | per score, with Idempotency-Key |
|---|---|---|---|
{table}
| **total** | | **{results[plain]:.2f}** | **{results[keyed]:.2f}** |

Target: at most {AWS_REQUESTS_TARGET} requests per score. Without an Idempotency-Key the path
**{_verdict(results[plain] <= AWS_REQUESTS_TARGET)}** it at {results[plain]:.2f}; with one it
**{_verdict(results[keyed] <= AWS_REQUESTS_TARGET)}** it at {results[keyed]:.2f}. The post reads the player's
item (GetItem), announces the change (SendMessage) and writes the item once (UpdateItem), however many boards the
score feeds; the consumer reads its batch's players in one BatchGetItem and writes nothing to DynamoDB; its
SendMessageBatch is a publisher's wake-up (one per burst of changes to a board, not per score). An Idempotency-Key
costs no request of its own: its receipt is read with the player's item (BatchGetItem) and written with the score
(a TransactWriteItems in place of the UpdateItem).
Starting the action the score is for (POST /v1/actions) is a request of its own, before the score:
{results["aws_requests_per_action"]:.2f} per action, not in the totals above.
"""


def _write_units_section(results: dict[str, float]) -> str:
    boards = aws_requests.TEMPLATE_BOARDS
    variants = {
        "_1_board": "1 board",
        f"_{boards}_boards": f"{boards} boards",
        f"_{boards}_boards_over_days": f"{boards} boards, over {aws_requests.DAYS} days",
        f"_{boards}_boards_with_idempotency_key": f"{boards} boards, with Idempotency-Key",
    }
    rows, totals = _unit_rows(results, "dynamodb_wcu_per_score", variants)
    read_rows, read_totals = _unit_rows(results, "dynamodb_rcu_per_score", variants)
    three = results[f"dynamodb_wcu_per_score_{boards}_boards"]
    over_days = results[f"dynamodb_wcu_per_score_{boards}_boards_over_days"]
    size, seasons = int(results["dynamodb_player_item_bytes"]), int(results["dynamodb_player_item_board_seasons"])
    return f"""
## DynamoDB write and read units per accepted score

The same flow, in-process with moto (as above), with write capacity units computed by DynamoDB's documented rules,
not moto's: every PutItem, UpdateItem and DeleteItem, and every item of a TransactWriteItems or BatchWriteItem, is
billed ceil(max(the item's size before, after) / 1 KB) units, at least 1, twice that inside a transaction; the item
is read before and after each write (GetItem, outside the count) and sized by
[the item-size rules](https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/CapacityUnitCalculations.html)
(names and values in UTF-8 bytes; a number about 1 byte per two significant digits plus 1; a set the sum of its
elements; a map or list 3 bytes plus 1 per element plus its contents). Read units by the same sizes: ceil(size /
4 KB), at least 1, per item a GetItem or BatchGetItem asks for (strongly consistent). A score's whole flow:
starting its action (StartAction's UpdateItem), the post, the consumer. With a GAME of only the template's `global`
board (1 board), with the template's GAME ({boards} boards); then {aws_requests.PLAYERS} players scoring once a day
for {aws_requests.DAYS} days (the process's clock moved a day at a time), so their items carry the daily and weekly
seasons still readable; and with an Idempotency-Key. {_command("aws_requests")}

| stage | write | {" | ".join(variants.values())} |
|---|---|{"---|" * len(variants)}
{chr(10).join(rows)}
| **total** | | {totals} |

| stage | read (units) | {" | ".join(variants.values())} |
|---|---|{"---|" * len(variants)}
{chr(10).join(read_rows)}
| **total** | | {read_totals} |

Target: at most {WCU_TARGET} units per score with the template's {boards} boards: the flow
**{_verdict(three <= WCU_TARGET)}** it at {three:.2f} (and at {over_days:.2f} over {aws_requests.DAYS} days). Where
they go: the action's UpdateItem (1), the score's UpdateItem of the player's item (1); the consumer only reads.
Before this design (issue 10) a score took 6: the accept was a 2-item transaction (the action's record and the
player's item, 2 units each) and the consumer wrote the item again. More boards add no write: a score writes the one
player item whatever boards it feeds, so 1 board and {boards} cost the same while the item stays under 1 KB. An
Idempotency-Key makes the score's write a 2-item transaction with its receipt (4 units instead of 1).

The player's item after {aws_requests.DAYS} days of one score a day: at most **{size} bytes**, carrying {seasons}
board-seasons (the global board's one, this week's and the earlier weeks still readable, today's daily best and the
last days' still readable); {int(results["dynamodb_player_item_bytes_without_seasons"])} bytes without them,
{results["dynamodb_player_item_bytes_per_board_season"]:.1f} bytes per board-season (its `board/season` name and
[points, reached_at_ms]). 1 KB is the size up to which each write of the item costs 1 unit: it holds
**{int(results["dynamodb_board_seasons_per_kb"])} board-seasons**. Each open action adds its id to the item's set of
its type: at the largest size above, room for {int(results["dynamodb_player_item_open_actions_room"])} open actions
before a write of the item costs 2 units (the template's `match` allows 3 at once).
"""


def _unit_rows(results: dict[str, float], name: str, variants: dict[str, str]) -> tuple[list[str], str]:
    """A units table's rows (stage, operation, a cell per variant) and its totals row's cells."""
    rows = []
    for stage in aws_requests.WCU_STAGES:
        prefixes = [f"{name}{variant}_{stage}_" for variant in variants]
        operations = sorted(
            {found.removeprefix(prefix) for prefix in prefixes for found in results if found.startswith(prefix)}
        )
        for operation in operations:
            cells = " | ".join(f"{results.get(f'{prefix}{operation}', 0):.2f}" for prefix in prefixes)
            rows.append(f"| {stage} | {operation} | {cells} |")
    return rows, " | ".join(f"**{results[f'{name}{variant}']:.2f}**" for variant in variants)


def _cost_section(results: dict[str, float]) -> str:
    target = results["usd_cost_target_per_million_scores"]
    parts = ("api_gateway", "lambda", "dynamodb", "sqs", "elasticache", "appsync")
    variants = {
        "": "now, reference load",
        "_on_demand": "now, on demand",
        "_before": "before, reference load",
        "_before_on_demand": "before, on demand",
    }
    rows = "\n".join(
        f"| {part.replace('_', ' ')} | "
        + " | ".join(f"{results[f'usd_per_million_scores{variant}_{part}']:.2f}" for variant in variants)
        + " |"
        for part in parts
    )
    totals = " | ".join(f"**{results[f'usd_per_million_scores{variant}']:.2f}**" for variant in variants)
    lines = ("score_updates", "top10_reads", "logins_and_refreshes", "live_feed", "fixed", "logs_and_traces")
    month = "\n".join(
        f"| {line.replace('_', ' ')} | {results[f'usd_per_month_reference_{line}']:,.0f} |" for line in lines
    )
    headline = results["usd_per_million_scores"]
    return f"""
## What a score update costs, in dollars

Computed from the counts above and AWS's published prices (us-east-1; `bench/cost.py` lists every price, where it is
published, and every assumption: Lambda's billed durations, the authorizer cache's misses, the audience). DEPLOY.md
explains each line. "Reference load": 500 score updates a second on average (1,314 million a month), DynamoDB
provisioned with auto scaling (70 % utilization), HTTP API requests past 300 million a month at $0.90. "On demand":
DynamoDB on demand, every request at the first tier. "Before": the design of issue 10 (6 write units per score).
{_command("cost")}

| USD per million score updates | {" | ".join(variants.values())} |
|---|{"---|" * len(variants)}
{rows}
| **all-in** | {totals} |

Target: at most ${target:.2f} per million score updates all-in at the reference load: **{_verdict(headline <= target)}**
it at ${headline:.2f}. The contract alone (two HTTP requests, two Lambda invocations, one SQS message, two writes) is
about $4 on demand, so on demand cannot meet it; provisioned capacity at a steady load does. Logs and traces, not in
the target's list, add ${results["usd_per_million_scores_logs_and_traces"]:.2f} per million (access logs; X-Ray at
`TracingMode=Active`). The live feed's deliveries are the audience's cost, not the scores': per month below.

| USD per month at the reference load | |
|---|---|
{month}
| **total** | **{results["usd_per_month_reference"]:,.0f}** |

Fully loaded (the month over its score updates): ${results["usd_per_million_scores_fully_loaded"]:.2f} per million.
"""


def _board_sections(results: dict[str, float]) -> str:
    apply_ratio, top_ratio = results["apply_vs_raw_ratio"], results["top10_vs_raw_ratio"]
    top_p99, rank_p99 = results["top10_p99_ms_10m"], results["rank_p99_ms_10m"]
    players, fill_s = int(results["board_players"]), results["board_fill_s"]
    bytes_per_player = results["redis_bytes_per_player_board_10m"]
    ranking_bytes = results["redis_bytes_per_player_ranking_10m"]
    hashes_bytes = results["redis_bytes_per_player_players_hashes_10m"]
    script_us, zincrby_us = results["redis_server_us_per_applied_score"], results["redis_server_us_per_zincrby"]
    cpu_ratio = results["redis_server_us_script_vs_zincrby_ratio"]
    best_shares = [
        f"{name.removeprefix('redis_server_cpu_applied_share_')}: {share:.0%}"
        for name, share in sorted(results.items())
        if name.startswith("redis_server_cpu_applied_share_")
    ]
    listpack_limit = int(results["redis_hash_max_listpack_entries"])
    ranking_row = (
        f"| `ranking` sorted set | {ranking_bytes:.1f} | the board itself: points -> 6-byte moment + user_id + ':' +"
        " name. Ranks, pages and the top 10 are one ZREVRANK or ZREVRANGE, names included. A big sorted set is a"
        " skiplist and a dict: per player a skiplist node, the member string (about 53 bytes here) and a dict entry,"
        " plus the dict's table |"
    )
    hashes_row = (
        f"| `players:<n>` hashes | {hashes_bytes:.1f} | user_id -> the member's 6 bytes + name: where a player's"
        " member is (it changes with every score, so it cannot be derived from the id). "
        f"{PLAYER_HASHES:,} small hashes by crc32(user_id): {results['redis_players_per_hash_mean_10m']:.1f} players"
        f" a hash on average, at most {int(results['redis_players_per_hash_max_10m'])}, so each stays in listpack"
        " encoding (one packed allocation, about 2 bytes of overhead per field and value;"
        f" {results['redis_players_hashes_listpack_share_10m']:.0%} of"
        f" {int(results['redis_players_hashes_sampled_10m']):,} sampled hashes were) instead of a dict entry and"
        " two strings per player in one big hash (about 125 bytes). Includes each"
        " hash's key and object |"
    )
    quick_note = (
        ""
        if players >= board_scale.DEFAULT_PLAYERS
        else f" This run has {players:,} players, not {board_scale.DEFAULT_PLAYERS:,}: the {PLAYER_HASHES:,} players'"
        " hashes' fixed cost (each hash's key and object) weighs more per player than it does at 10 million, so the"
        " figure is higher than at the target's size."
    )
    return f"""
## The exactly-once apply path beside plain ZINCRBY

Score events written to Redis by `Board.set_totals` as the consumer writes them to a board (one call of the Lua
script per batch of {board_throughput.BATCH} players' points: per player, find its member through its players' hash,
keep the write only if it moves the player up, replace the member; per call, the season's version, the top 10 before
and after, the publishing lease) and by a pipeline of {board_throughput.BATCH} plain ZINCRBY (redis-py): the same
stream of events onto an empty board each, on the same Redis, side by side: {board_throughput.BLOCKS} blocks of
{board_throughput.BLOCK_BATCHES * board_throughput.BATCH} events each, the order rotating every block; medians of the
per-block rates, as the client sees them. Both end with the same totals (checked). {_command("board_throughput")}

| path | score events/s |
|---|---|
| `Board.set_totals` (Lua, batches of {board_throughput.BATCH}) | {results["apply_redis_per_s"]:,.0f} |
| plain pipelined ZINCRBY (batches of {board_throughput.BATCH}) | {results["raw_zincrby_pipelined_per_s"]:,.0f} |
| ratio | {apply_ratio:.3f} |

Target: a ratio of at least {APPLY_VS_RAW_TARGET}; the apply path **{_verdict(apply_ratio >= APPLY_VS_RAW_TARGET)}**
it. Beyond ZINCRBY, the script makes five or six Redis calls per player (HGET, ZSCORE, ZREM, ZADD, HSET, and ZSCORE of
the watchers) and a few per call; what that costs the server is the next section.

## Redis server CPU per applied score beside ZINCRBY

What a score costs the Redis server itself (what sizes an ElastiCache node, or ElastiCache Serverless's ECPUs), not
what a client sees: microseconds from `INFO commandstats`, read before and after each block (the server is shared, so
nothing is reset; a block during which another client ran the same commands is left out:
{int(results["redis_server_cpu_blocks_left_out"])} here). A script's `usec` covers its whole run, the commands it
calls included. The template's {aws_requests.TEMPLATE_BOARDS} boards (global, all-time sum; weekly, sum; daily-best,
best single score), each a season pre-filled by `bench.board_fill` with **{int(results["redis_server_cpu_players"]):,}
players** (so the sorted sets' log n is real), get the consumer's writes: per batch of {board_cpu.BATCH} score events
of players drawn at random, one `Board.set_totals` per board (three board-writes per score), with the points the
ledger would hold. Beside them a plain sorted set of the same players gets one ZINCRBY per event.
{board_cpu.BLOCKS} blocks of {board_cpu.BLOCK_BATCHES * board_cpu.BATCH} events each, the two in turn; medians.
{_command("board_cpu")}

| path | server µs |
|---|---|
| `Board.set_totals`, per score per board (script usec / (scores x {aws_requests.TEMPLATE_BOARDS})) | {script_us:.2f} |
| ZINCRBY, per call | {zincrby_us:.2f} |
| ratio | {cpu_ratio:.2f} |

Target: a ratio of at most {SERVER_CPU_RATIO_TARGET}; the consumer's write
**{_verdict(cpu_ratio <= SERVER_CPU_RATIO_TARGET)}** it: a score costs the server
{script_us * aws_requests.TEMPLATE_BOARDS:.1f} µs across its {aws_requests.TEMPLATE_BOARDS} boards. Per player the
script reads the player's hash entry and its member's points, and when the player moves up removes the old member,
adds the new one and rewrites the hash entry, and checks the watchers; per call (a tenth of that per player) it reads
the top 10 before and after, raises the version and tries the publishing lease; around each Redis call the Lua
interpreter adds its own work (arguments in, replies out). A `best` board keeps a write only if it beats the
player's best (share of its writes applied here: {", ".join(best_shares) or "none"}); the others cost the lookups.

What that means on ElastiCache Serverless, which bills ECPUs by the CPU time a command takes and serves about
30,000 ECPU a second per slot (a board's season is one slot): if a ZINCRBY costs about one ECPU, a score costs about
{cpu_ratio:.1f} on each board it feeds, so one board takes at most about {30_000 / cpu_ratio:,.0f} scores a second
(more boards are more slots, each with its own ceiling).

## The top-10 read beside plain redis-py

`Board.top()` (one ZREVRANGE 0 9 WITHSCORES: the names travel in the members, so there is nothing else to fetch,
decoded into standings) beside the same ZREVRANGE through redis-py, undecoded. One board of
{board_throughput.TOP_PLAYERS:,} players; {board_throughput.BLOCKS} blocks of {board_throughput.BLOCK_READS} reads
each, the order rotating every block; medians of the per-block rates. {_command("board_throughput")}

| read | reads/s |
|---|---|
| `Board.top()` | {results["top10_read_per_s"]:,.0f} |
| plain ZREVRANGE 0 9 WITHSCORES | {results["raw_top10_per_s"]:,.0f} |
| ratio | {top_ratio:.3f} |

Target: a ratio of at least {TOP10_VS_RAW_TARGET}; the project's read **{_verdict(top_ratio >= TOP10_VS_RAW_TARGET)}**
it.

## Reads and memory with {players:,} players on a board

A season of a board of its own filled with {players:,} players in `leaderboard.board`'s layout by `bench.board_fill`
(raw RESP, pipelined: ZADDs of {board_fill.ZADD_MEMBERS:,} members, and per chunk of {board_fill.CHUNK:,} players one
HSET per players' hash they fall in: {fill_s:.1f} s, {players / fill_s:,.0f} players/s), checked with the project's
own reads and writes (`Board.standing` reads a filled player back; a `Board.set_totals` that moves one up replaces its
member, the sorted set does not grow), then {board_scale.SAMPLES:,} calls of each read, alternating, one at a time;
standings of players drawn at random. Milliseconds from the call to the decoded answer (client, loopback, Redis).
{_command("board_scale")}

| read | median (ms) | p99 (ms) |
|---|---|---|
| `Board.top()` (GET /v1/scores) | {results["top10_p50_ms_10m"]:.3f} | {top_p99:.3f} |
| `Board.standing(user_id)` (GET /v1/scores/{{user_id}}) | {results["rank_p50_ms_10m"]:.3f} | {rank_p99:.3f} |

Target: p99 at most {READ_P99_TARGET_MS} ms. The top 10 **{_verdict(top_p99 <= READ_P99_TARGET_MS)}** it, a
player's standing **{_verdict(rank_p99 <= READ_P99_TARGET_MS)}** it.

**Memory: {bytes_per_player:.0f} bytes per player per board** (INFO used_memory after the fill minus before, once it
stops moving, over the players; 32-character ids, names like "Player 1234567"), so
{bytes_per_player * 10_000_000 / 2**30:.1f} GiB for 10 million players on one board's season; each board, and each
season still readable, holds its own. Target: at most {BYTES_PER_PLAYER_TARGET} bytes at 10 million players (the
layout before seasons cost 450: a ranking, a hash of versions and members, a hash of names); this run
**{_verdict(bytes_per_player <= BYTES_PER_PLAYER_TARGET)}** it.{quick_note}

| structure | bytes per player | what it is for |
|---|---|---|
{ranking_row}
{hashes_row}

The ranking's share is `MEMORY USAGE` of the key ({board_scale.RANKING_SAMPLES:,} entries sampled); the players'
hashes' is the rest. A hash stays a listpack up to `hash-max-listpack-entries` entries ({listpack_limit} on this
server; 128 is Redis's default) of at most 64 bytes each.
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
    changes = [results[f"publisher_board_changes_per_score_{n}_subscribers"] for n in (few, many)]
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

`python -m local` as `make run` starts it, with the template's game (its {aws_requests.TEMPLATE_BOARDS} boards: a
score changes each board whose standings it moves). Subscribers are AppSync Events clients (`clients/event_api.py`),
one connection each, subscribed to `/boards/global` (the all-time board's channel) as `anonymous` through the
authorizer and the onSubscribe handler. {_command("live_push")}

**Push latency**: milliseconds from the 202 of POST /v1/scores to each subscriber's receipt of the global board's top
10 holding the new total: SQS, ApplyScores, the board's lease, BoardChangesQueue, PublishBoard (snapshot, audience,
standings), LiveEventsQueue, PublishEvents (SigV4, HTTP), the Event API, the socket. One warm-up score first; then one
sample per score, every subscriber counted, each score made once no publisher is at work on any board (the other
boards' publishers run at the same time as the global board's, on the same two cores). That is the path's own
latency: while a board keeps changing, a change also waits for the budget's next cycle, up to 1 / the board's rate
(0.25 s up to 250 viewers, 1 s at 1,000, 5 s from 5,000 at the defaults), by design.

| subscribers | p50 (ms) | p99 (ms) | scores |
|---|---|---|---|
{rows}

Targets: p99 at most {verdicts}.
The emulator writes one frame per subscriber from one Python process and the
10,000 clients read them in the benchmark's process, on the same two cores: at 10,000 the receiving side, not the
design, is most of the time. On AWS the fan-out is AppSync's (up to 1,000,000 deliveries a second per API).

**The publisher's own work per board change** (PublishBoard and PublishEvents together, over {live_push.WORK_CHANGES}
scores made one at a time, divided by the board changes they made: one top-10 publish each in PublishBoard's log, as
nobody here watches their own standing): AWS requests counted from their logs (SQS requests, HTTP publishes), CPU from
their worker processes (`/proc/<pid>/task/*/schedstat`, every thread).

| subscribers | board changes per score | AWS requests per board change | CPU ms per board change |
|---|---|---|---|
| {few:,} | {changes[0]:.2f} | {requests[0]:.2f} | {cpu[0]:.2f} |
| {many:,} | {changes[1]:.2f} | {requests[1]:.2f} | {cpu[1]:.2f} |

Target: equal within {PUBLISHER_WORK_TOLERANCE:.0%} at {few:,} and at {many:,} subscribers; this run
**{_verdict(work_met)}** it. Per board change: one SendMessageBatch (the cycle's publishes) and one signed publish of
its top 10, whatever the audience; the old design posted once per connection (1.2-1.4 ms of boto3 CPU each).

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
change costs only its connections and renewals. The publishes are counted on every board's channel: each score also
changes the weekly board, which nobody watches here, so its top 10 goes out at the ceiling (4 a second, 14,400 an
hour, $0.01) with no delivery; the deliveries are the global board's.
"""


if __name__ == "__main__":
    main(sys.argv[1:])
