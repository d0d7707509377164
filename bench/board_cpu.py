"""Redis server CPU per applied score: the consumer's board writes beside plain ZINCRBY, from INFO commandstats.

What a score costs the Redis server itself (the figure that sizes an ElastiCache node or its ECPUs), not what a
client sees: the microseconds Redis spends executing the commands, from `INFO commandstats`. The server is shared
(the tests use it too), so nothing is reset (CONFIG RESETSTAT is global): the statistics are read before and after
every block and the differences taken. A script's `usec` (EVALSHA, and EVAL) counts the script's whole run, the Redis
commands it calls included; ZINCRBY's counts ZINCRBY's. A block whose call counts are not exactly the benchmark's own
(another client ran EVALSHA or ZINCRBY meanwhile) is left out.

The boards: the template's GAME (`global`, all-time sum; `weekly`, sum, weekly reset; `daily-best`, best single
score, daily reset), each a season of its own (`bench-cpu-<board>`, with the season's expiry as the consumer sets it)
pre-filled with PLAYERS players by `bench.board_fill` (1,000,000, or BENCH_PLAYERS if smaller), so the sorted sets'
log n is real; the daily-best board's filled points are single scores (1..1000). Beside them, a plain sorted set of
the same PLAYERS players (user_id -> points), the ZINCRBY board.

The stream: score events of players drawn at random among the filled ones (1 to 1000 points each), in batches of 10
distinct players, as the consumer receives them. Per batch, as the consumer writes it: one `Board.set_totals` per
board (so three board-writes per score), with the points the ledger would hold (sum: the total so far; best: the best
score, which the write applies only if it moves the player up), `live=True` (the season on show). The ZINCRBY board
gets one ZINCRBY per event (its points), ten to a pipeline. BLOCKS blocks of BLOCK_BATCHES batches, the two in turn,
the order rotating every block, after one unmeasured block of each (scripts loaded, caches warm). Figures: the
median over the blocks of the script's microseconds per score per board (script usec / (scores x boards)) and of
ZINCRBY's microseconds per call, and their ratio.
"""

import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import redis

from bench import template_game
from bench.board_fill import (
    EPOCH_MS,
    SPREAD_MS,
    client,
    display_name,
    drop,
    fill,
    fill_plain,
    reached_at_ms,
    total,
    user_id,
)
from bench.board_scale import PLAYERS as SCALE_PLAYERS
from leaderboard.board import Board, PlayerTotal
from leaderboard.game import DEFAULT_ACTION_TYPE, BoardDefinition, parse

PLAYERS = min(1_000_000, SCALE_PLAYERS)
BLOCKS = 40
BLOCK_BATCHES = 20  # per block: 200 score events, 600 board-writes
BATCH = 10  # the consumer's SQS batch size (template.yaml: BatchSize: 10)
MAX_SCORE = 1_000  # the template's `match` action type
RAW_KEY = "bench:{bench-cpu-zincrby}:ranking"


def best_points(index: int) -> int:
    """A filled player's best single score on a `best` board."""
    return 1 + total(index) % MAX_SCORE


@dataclass
class _Board:
    definition: BoardDefinition
    board: Board
    points: Callable[[int], int]
    ledger: dict[int, tuple[int, int]] = field(default_factory=dict)

    def scored(self, index: int, score: int, moment_ms: int) -> PlayerTotal:
        """The player's points on this board once `score` counts, as the ledger would hold them."""
        points, reached = self.ledger.get(index, (self.points(index), reached_at_ms(index)))
        if self.definition.aggregate == "sum":
            points, reached = points + score, moment_ms
        elif score > points:
            points, reached = score, moment_ms
        self.ledger[index] = (points, reached)
        return PlayerTotal(user_id(index), display_name(index), points, reached)


def _boards(connection: "redis.Redis") -> list[_Board]:
    now_ms = int(time.time() * 1000)
    boards = []
    for definition in parse(template_game()).boards_fed_by(DEFAULT_ACTION_TYPE, by_server=False):
        season = definition.season_at(now_ms)
        board = Board(
            f"bench-cpu-{definition.id}", season.name, connection, expires_at_ms=definition.expires_at_ms(season)
        )
        boards.append(_Board(definition, board, total if definition.aggregate == "sum" else best_points))
    return boards


def _commandstats(connection: "redis.Redis") -> dict[str, tuple[int, int]]:
    """(calls, usec) of the scripts (EVALSHA and EVAL together) and of ZINCRBY, server-wide, since the last reset."""
    stats = connection.info("commandstats")

    def of(*names: str) -> tuple[int, int]:
        found = [stats.get(f"cmdstat_{name}", {}) for name in names]
        return sum(int(entry.get("calls", 0)) for entry in found), sum(int(entry.get("usec", 0)) for entry in found)

    return {"script": of("evalsha", "eval"), "zincrby": of("zincrby")}


def run() -> dict[str, float]:
    """Server microseconds per applied score per board (the consumer's scripts) and per plain ZINCRBY, side by side."""
    connection = client()
    boards = _boards(connection)
    draw = random.Random(20_261_207)
    # Scores reached after every filled moment, 100 ms apart.
    first_ms = EPOCH_MS + SPREAD_MS
    blocks: list[tuple[list[list[PlayerTotal]], list[list[tuple[str, int]]]]] = []
    number = 0
    for _ in range(BLOCKS + 1):
        writes: list[list[PlayerTotal]] = []
        increments: list[list[tuple[str, int]]] = []
        for _ in range(BLOCK_BATCHES):
            batch = []
            for index in draw.sample(range(PLAYERS), BATCH):
                number += 1
                batch.append((index, draw.randint(1, MAX_SCORE), first_ms + 100 * number))
            writes += [[target.scored(*event) for event in batch] for target in boards]
            increments.append([(user_id(index), score) for index, score, _ in batch])
        blocks.append((writes, increments))

    for target in boards:
        drop(connection, target.board)
    connection.unlink(RAW_KEY)
    applied = {target.definition.id: 0 for target in boards}
    try:
        for target in boards:
            print(f"  filling {target.definition.id}'s season with {PLAYERS:,} players", flush=True)
            fill(connection, target.board, PLAYERS, points=target.points)
        print(f"  filling a plain sorted set with {PLAYERS:,} players", flush=True)
        fill_plain(connection, RAW_KEY, PLAYERS)

        def scripts(block: int) -> None:
            writes, _ = blocks[block]
            for start in range(0, len(writes), len(boards)):
                for target, totals in zip(boards, writes[start : start + len(boards)], strict=True):
                    applied[target.definition.id] += target.board.set_totals(totals, live=True).applied

        def zincrbys(block: int) -> None:
            _, batches = blocks[block]
            for batch in batches:
                pipeline = connection.pipeline(transaction=False)
                for uid, score in batch:
                    pipeline.zincrby(RAW_KEY, score, uid)
                pipeline.execute()

        events = BLOCK_BATCHES * BATCH
        expected_calls = {"script": BLOCK_BATCHES * len(boards), "zincrby": events}
        per_unit = {"script": events * len(boards), "zincrby": events}
        contenders: dict[str, Callable[[int], None]] = {"script": scripts, "zincrby": zincrbys}
        samples: dict[str, list[float]] = {name: [] for name in contenders}
        left_out = dict.fromkeys(contenders, 0)
        for block in range(BLOCKS + 1):
            order = list(contenders) if block % 2 == 0 else list(reversed(contenders))
            for name in order:
                before = _commandstats(connection)[name]
                contenders[name](block)
                after = _commandstats(connection)[name]
                calls, usec = after[0] - before[0], after[1] - before[1]
                if block == 0:
                    continue  # the warm-up block
                if calls != expected_calls[name]:
                    left_out[name] += 1  # another client's commands of the same name ran meanwhile
                    continue
                samples[name].append(usec / per_unit[name])
        for name, values in samples.items():
            if len(values) < BLOCKS // 2:
                raise RuntimeError(f"only {len(values)} of {BLOCKS} blocks of {name} were the benchmark's alone")
    finally:
        for target in boards:
            drop(connection, target.board)
        connection.unlink(RAW_KEY)

    script_us, zincrby_us = statistics.median(samples["script"]), statistics.median(samples["zincrby"])
    writes_per_board = (BLOCKS + 1) * BLOCK_BATCHES * BATCH
    results: dict[str, float] = {
        "redis_server_us_per_applied_score": round(script_us, 2),
        "redis_server_us_per_zincrby": round(zincrby_us, 2),
        "redis_server_us_script_vs_zincrby_ratio": round(script_us / zincrby_us, 2),
        "redis_server_cpu_players": PLAYERS,
        "redis_server_cpu_blocks_left_out": max(left_out.values()),
    }
    for target in boards:
        if target.definition.aggregate == "best":
            share = applied[target.definition.id] / writes_per_board
            results[f"redis_server_cpu_applied_share_{target.definition.id}"] = round(share, 3)
    return results
