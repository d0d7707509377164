"""The board's reads with 10 million players on it, and what each player costs in Redis memory on a board.

A season of a board of its own (`bench-scale`, season `all`, in the benchmarks' Redis database) is filled with
BENCH_PLAYERS players (default 10,000,000; set a smaller count for a quick run) in the exact layout
`leaderboard.board` writes, by `bench.board_fill` (pipelined ZADD and per-hash HSET commands; the fill is timed and its
progress printed), then checked with the project's own code (`Board.standing` reads a filled player back,
`Board.set_totals` moves one up in place).

Latency: SAMPLES calls of `Board.top()` (GET /v1/scores) and SAMPLES of `Board.standing(user_id)` (GET
/v1/scores/{user_id}: the player's rank and 4 above and 4 below) for players drawn at random, alternating, one at a
time as a Lambda makes them; each is timed from the call to the decoded result (client, loopback, Redis), and the
p99 and median are reported in milliseconds.

Memory: INFO's used_memory after the fill (once Redis has finished growing its hash tables: it is read until it
stops changing) minus before it, divided by the players: the bytes a player costs on one board's season, with
32-character ids and names like "Player 1234567". Split by structure: the ranking sorted set's own size (MEMORY USAGE
with RANKING_SAMPLES sampled entries: the skiplist nodes, their member strings, the dict entries and the dict's
table), and the rest, the 2^17 players' hashes (their listpack entries, and per hash its key, object and allocation;
a fixed cost that weighs less per player the more players there are). HASH_SAMPLES of the hashes are checked for their
encoding (listpack: Redis keeps a small hash as one packed allocation, about 2 bytes of overhead per field and
value, instead of a dict entry and two strings each). The server is shared, so other clients' keys can move
used_memory a little; at 10 million players that is noise.

The season is deleted afterwards (SCAN + UNLINK, freed in the background; the benchmark waits for that to finish).
"""

import os
import random
import statistics
import time

import redis

from bench.board_fill import check_layout, client, drop, fill, players_hash_names, user_id
from leaderboard.board import PLAYER_HASHES, Board

DEFAULT_PLAYERS = 10_000_000
PLAYERS = int(os.environ.get("BENCH_PLAYERS", DEFAULT_PLAYERS))
SAMPLES = 5_000
SETTLE_SECONDS = 60
RANKING_SAMPLES = 100_000
HASH_SAMPLES = 1_000  # players' hashes drawn for their encoding (the empty ones, at a small size, do not exist)


def _say(message: str) -> None:
    print(f"  {message}", flush=True)


def _used_memory(connection: "redis.Redis") -> int:
    return int(connection.info("memory")["used_memory"])


def _settled_memory(connection: "redis.Redis") -> int:
    """used_memory once background frees and hash-table rehashing are done (it stops moving), at most a minute."""
    deadline = time.monotonic() + SETTLE_SECONDS
    previous = -1
    while time.monotonic() < deadline:
        memory = connection.info("memory")
        if int(memory.get("lazyfree_pending_objects", 0)) == 0 and int(memory["used_memory"]) == previous:
            break
        previous = int(memory["used_memory"])
        time.sleep(1)
    return _used_memory(connection)


def _percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def run() -> dict[str, float]:
    """Fill time, p99 and median of the two reads at PLAYERS players, and Redis bytes per player."""
    connection = client()
    board = Board("bench-scale", "all", connection)
    drop(connection, board)  # a run that was killed may have left it
    before = _settled_memory(connection)
    try:
        _say(f"filling a board with {PLAYERS:,} players")
        started = time.perf_counter()
        occupancy = fill(connection, board, PLAYERS, _say)
        fill_seconds = time.perf_counter() - started
        _say(f"filled in {fill_seconds:.1f} s ({PLAYERS / fill_seconds:,.0f} players/s)")
        bytes_per_player = (_settled_memory(connection) - before) / PLAYERS
        ranking_bytes = int(connection.memory_usage(board.keys["ranking"], samples=RANKING_SAMPLES) or 0)
        hashes = players_hash_names(board)
        sampled = random.Random(7).sample(range(PLAYER_HASHES), HASH_SAMPLES)
        encodings = [connection.object("encoding", hashes[number]) for number in sampled]
        listpacks = sum(encoding == b"listpack" for encoding in encodings if encoding is not None)
        filled_hashes = sum(encoding is not None for encoding in encodings)
        listpack_limit = int(str(connection.config_get("hash-max-listpack-entries")["hash-max-listpack-entries"]))
        _say(
            f"{bytes_per_player:.1f} bytes a player: ranking {ranking_bytes / PLAYERS:.1f}, players' hashes"
            f" {bytes_per_player - ranking_bytes / PLAYERS:.1f} ({PLAYERS / PLAYER_HASHES:.1f} players a hash, at most"
            f" {max(occupancy)}; {listpacks} of {filled_hashes} sampled hashes in listpack encoding)"
        )
        check_layout(connection, board, PLAYERS)

        draw = random.Random(20_260_101)
        top_ms: list[float] = []
        rank_ms: list[float] = []
        for _ in range(SAMPLES):
            started = time.perf_counter()
            top = board.top()
            top_ms.append((time.perf_counter() - started) * 1000)
            player = user_id(draw.randrange(PLAYERS))
            started = time.perf_counter()
            found = board.standing(player)
            rank_ms.append((time.perf_counter() - started) * 1000)
            assert len(top) == min(10, PLAYERS)
            assert found is not None
            assert found[0].user_id == player
    finally:
        drop(connection, board)
        _say("board deleted; waiting for Redis to free it")
        _settled_memory(connection)
    return {
        "board_players": PLAYERS,
        "board_fill_s": round(fill_seconds, 1),
        "top10_p99_ms_10m": round(_percentile(top_ms, 0.99), 3),
        "top10_p50_ms_10m": round(statistics.median(top_ms), 3),
        "rank_p99_ms_10m": round(_percentile(rank_ms, 0.99), 3),
        "rank_p50_ms_10m": round(statistics.median(rank_ms), 3),
        "redis_bytes_per_player_board_10m": round(bytes_per_player, 1),
        "redis_bytes_per_player_ranking_10m": round(ranking_bytes / PLAYERS, 1),
        "redis_bytes_per_player_players_hashes_10m": round(bytes_per_player - ranking_bytes / PLAYERS, 1),
        "redis_players_per_hash_mean_10m": round(PLAYERS / PLAYER_HASHES, 1),
        "redis_players_per_hash_max_10m": max(occupancy),
        "redis_players_hashes_listpack_share_10m": round(listpacks / max(filled_hashes, 1), 3),
        "redis_players_hashes_sampled_10m": filled_hashes,
        "redis_hash_max_listpack_entries": listpack_limit,
    }
