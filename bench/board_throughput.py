"""What the board's guarantees cost in Redis: the project's write and read paths beside plain redis-py doing the least
that could pass for the same job, on the same Redis, side by side in one run (client-side rates: what a Lambda sees).

Writes. `Board.set_totals` is the consumer's exactly-once apply: one call of the Lua script per batch of 10 players'
points, as the consumer sends them to each board (per player: find its member through its players' hash, compare,
drop the old member, ZADD the new one, store where it is; per call: the season's version, the top 10 before and
after, the publishing lease). The baseline is a pipeline of 10 plain ZINCRBY (redis-py, no tie order, no names, no
protection against a score counted twice): what a board that trusts its input to arrive exactly once would send.
Both get the same stream of score events (PLAYERS players, 10 distinct players per batch) onto an empty board of their
own; figure: events per second.

Reads. `Board.top()` is GET /v1/scores's read: one ZREVRANGE 0 9 WITHSCORES (the names travel in the members),
turned into Standings. The baseline is the same ZREVRANGE through redis-py, undecoded. Both read the same board of
TOP_PLAYERS players (filled in the project's layout); figure: reads per second.

Side by side: the work is cut into BLOCKS blocks; each contender does its share of block 1, then of block 2...,
the order rotating every block, so a burst of noise from the machine's other tenants hits all of them alike. Each
figure is the median of the per-block rates; all use one redis-py client, one call after another as a Lambda makes them.
"""

import statistics
import time
from collections.abc import Callable
from typing import cast

import redis

from bench.board_fill import EPOCH_MS, client, drop, fill, split_member
from leaderboard.board import Board, PlayerTotal

BLOCKS = 60
BLOCK_BATCHES = 50  # per block and contender: 500 score events
BATCH = 10  # the consumer's SQS batch size (template.yaml: BatchSize: 10)
PLAYERS = 1_000
BLOCK_READS = 100
TOP_PLAYERS = 10_000


def _events(count: int) -> list[tuple[PlayerTotal, int]]:
    """`count` score events: the total the ledger would hand to set_totals, and the points ZINCRBY would add."""
    totals = [0] * PLAYERS
    events = []
    for number in range(count):
        player = number % PLAYERS
        points = 1 + (number * 37) % 1_000
        totals[player] += points
        uid = f"{player:032x}"
        events.append((PlayerTotal(uid, f"Player {player}", totals[player], EPOCH_MS + number), points))
    return events


def _side_by_side(contenders: dict[str, Callable[[int], None]], per_block: int) -> dict[str, float]:
    """Operations per second of each contender: BLOCKS blocks, each contender doing block `b` in turn (the order
    rotating every block, so all suffer the machine's noise alike); the median of the per-block rates."""
    names = list(contenders)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for block in range(BLOCKS):
        shift = block % len(names)
        for name in names[shift:] + names[:shift]:
            started = time.perf_counter()
            contenders[name](block)
            samples[name].append(per_block / (time.perf_counter() - started))
    return {name: statistics.median(values) for name, values in samples.items()}


def writes(connection: "redis.Redis") -> dict[str, float]:
    board = Board("bench-apply", "all", connection)
    raw_key = "bench:{raw-zincrby}:ranking"
    events = _events(BLOCKS * BLOCK_BATCHES * BATCH)
    batches = [events[start : start + BATCH] for start in range(0, len(events), BATCH)]
    totals = [[player for player, _ in batch] for batch in batches]

    def apply(block: int) -> None:
        for batch in totals[block * BLOCK_BATCHES : (block + 1) * BLOCK_BATCHES]:
            board.set_totals(batch)

    def zincrby(block: int) -> None:
        for batch in batches[block * BLOCK_BATCHES : (block + 1) * BLOCK_BATCHES]:
            pipeline = connection.pipeline(transaction=False)
            for player, points in batch:
                pipeline.zincrby(raw_key, points, player.user_id)
            pipeline.execute()

    drop(connection, board)
    connection.delete(raw_key)
    try:
        rates = _side_by_side({"apply": apply, "raw": zincrby}, BLOCK_BATCHES * BATCH)
        # Both boards end with the same totals: the comparison did the same work.
        expected = {player.user_id: float(player.total) for player, _ in events[-PLAYERS:]}
        raw = cast(list[tuple[bytes, float]], connection.zrange(raw_key, 0, -1, withscores=True))
        assert dict(raw) == {key.encode(): value for key, value in expected.items()}
        assert {s.user_id: float(s.score) for s in board.top(PLAYERS)} == expected
    finally:
        drop(connection, board)
        connection.delete(raw_key)
    return {
        "apply_redis_per_s": round(rates["apply"]),
        "raw_zincrby_pipelined_per_s": round(rates["raw"]),
        "apply_vs_raw_ratio": round(rates["apply"] / rates["raw"], 3),
    }


def reads(connection: "redis.Redis") -> dict[str, float]:
    board = Board("bench-top10", "all", connection)
    ranking = board.keys["ranking"]
    drop(connection, board)
    fill(connection, board, TOP_PLAYERS)

    def project(_: int) -> None:
        for _ in range(BLOCK_READS):
            board.top()

    def plain(_: int) -> None:
        for _ in range(BLOCK_READS):
            connection.zrevrange(ranking, 0, 9, withscores=True)

    try:
        plain_top = cast(list[tuple[bytes, float]], connection.zrevrange(ranking, 0, 9, withscores=True))
        assert [(s.user_id, s.user_name, s.score) for s in board.top()] == [
            (*split_member(entry), int(points)) for entry, points in plain_top
        ]
        rates = _side_by_side({"project": project, "raw": plain}, BLOCK_READS)
    finally:
        drop(connection, board)
    return {
        "top10_read_per_s": round(rates["project"]),
        "raw_top10_per_s": round(rates["raw"]),
        "top10_vs_raw_ratio": round(rates["project"] / rates["raw"], 3),
    }


def run() -> dict[str, float]:
    """Events/s and reads/s of the project's board beside plain redis-py, and their ratios."""
    connection = client()
    return writes(connection) | reads(connection)
