"""Shared by the Redis benchmarks: the benchmarks' own Redis database, and a fast way to fill a board.

Every Redis benchmark runs on `BENCH_REDIS_URL` (default redis://127.0.0.1:6379/14, a database the tests and the
local runtime do not use), on boards named `bench-*` of its own, and deletes them afterwards with UNLINK (freed in
Redis's background thread, so other users of a shared server are not blocked while millions of entries go). Nothing
here runs FLUSHDB or FLUSHALL.

`fill` builds the three structures of a board directly, in the exact layout `leaderboard.board` uses (its keys come
from `Board(name).keys`, the member's width from `board.MAX_MS`): the ranking sorted set (total -> "<13 digits of
MAX_MS - reached_at_ms>:<user_id>"), the players hash (user_id -> "<version>|<member>") and the names hash
(user_id -> display name). It sends one ZADD and two HSETs of `CHUNK` players each, serialized to RESP by hand and
written to the socket without waiting for the previous chunk's replies, so Redis inserts one chunk while Python
formats the next: about 2.5x faster than redis-py's own command packing (measured at 500,000 players), which
matters at 10 million.
`check_layout` then proves the layout with the project's own code: a version-gated write (`Board.set_totals`) must
find and replace a filled player's member, and `Board.standing` must read the filled player back.
"""

import os
import time
from collections.abc import Callable

import redis

from leaderboard.board import MAX_MS, Board, PlayerTotal

REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
CHUNK = 10_000
# Filled players reached their totals during the 30 days after this moment.
EPOCH_MS = 1_767_225_600_000
SPREAD_MS = 30 * 86_400_000
# Totals are spread over 0..MAX_FILLED_TOTAL (many ties, as on a real board; ties are ordered by the member).
MAX_FILLED_TOTAL = 1_000_003


def client() -> "redis.Redis":
    """A client of the benchmarks' Redis database (fails at once if Redis is not running)."""
    connection = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        connection.ping()
    except redis.RedisError as exc:
        raise SystemExit(f"the Redis benchmarks need a Redis server at {REDIS_URL} (set BENCH_REDIS_URL)") from exc
    return connection


def user_id(index: int) -> str:
    """The filled player number `index`: 32 hex digits, the shape of the project's ids (uuid4().hex)."""
    return f"{index:032x}"


def total(index: int) -> int:
    return (index * 2_654_435_761) % MAX_FILLED_TOTAL


def reached_at_ms(index: int) -> int:
    return EPOCH_MS + (index * 7_919) % SPREAD_MS


def display_name(index: int) -> str:
    return f"Player {index}"


def version(index: int) -> int:
    return index % 50 + 1


def member(index: int) -> str:
    return f"{MAX_MS - reached_at_ms(index):013d}:{user_id(index)}"


def drop(connection: "redis.Redis", board: Board) -> None:
    """Delete the board's keys without blocking Redis (UNLINK frees big keys in the background)."""
    connection.unlink(*board.keys.values())


def _command(name: str, key: str, count: int) -> str:
    """The RESP header of a command of `count` field/value (or score/member) pairs."""
    return f"*{2 + 2 * count}\r\n${len(name)}\r\n{name}\r\n${len(key)}\r\n{key}\r\n"


def fill(connection: "redis.Redis", board: Board, players: int, say: Callable[[str], None] | None = None) -> None:
    """Put `players` players (0..players-1) on an empty board, CHUNK at a time, pipelined."""
    ranking, players_key, names = (board.keys[name] for name in ("ranking", "players", "names"))
    pool = connection.connection_pool
    raw = pool.get_connection()
    try:
        unanswered = 0
        next_report = time.perf_counter() + 5
        for start in range(0, players, CHUNK):
            stop = min(players, start + CHUNK)
            zadd, versions, display = [], [], []
            for index in range(start, stop):
                uid, entry, score = user_id(index), member(index), str(total(index))
                stamped, name = f"{version(index)}|{entry}", display_name(index)
                zadd.append(f"${len(score)}\r\n{score}\r\n${len(entry)}\r\n{entry}\r\n")
                versions.append(f"${len(uid)}\r\n{uid}\r\n${len(stamped)}\r\n{stamped}\r\n")
                display.append(f"${len(uid)}\r\n{uid}\r\n${len(name.encode())}\r\n{name}\r\n")
            count = stop - start
            packed = "".join(
                [
                    _command("ZADD", ranking, count),
                    *zadd,
                    _command("HSET", players_key, count),
                    *versions,
                    _command("HSET", names, count),
                    *display,
                ]
            )
            raw.send_packed_command([packed.encode()])
            for _ in range(3 * unanswered):  # the previous chunk's replies: Redis worked on it meanwhile
                raw.read_response()  # raises the error if Redis refused the command
            unanswered = 1
            if say and time.perf_counter() >= next_report:
                say(f"{stop:,} of {players:,} players")
                next_report = time.perf_counter() + 5
        for _ in range(3 * unanswered):
            raw.read_response()
    except BaseException:
        raw.disconnect()  # replies may be pending on it: never hand it back to the pool
        raise
    finally:
        pool.release(raw)


def check_layout(connection: "redis.Redis", board: Board, players: int) -> None:
    """Fail unless the project's own code reads and updates a filled board as one it wrote itself."""
    index = players // 2
    standing, _ = board.standing(user_id(index)) or (None, [])
    assert standing is not None, "Board.standing does not find a filled player"
    assert (standing.score, standing.user_name) == (total(index), display_name(index)), standing
    before = connection.zcard(board.keys["ranking"])
    board.set_totals(
        [PlayerTotal(user_id(index), display_name(index), total(index) + 1, version(index) + 1, reached_at_ms(index))]
    )
    assert connection.zcard(board.keys["ranking"]) == before, "set_totals did not find the filled member to replace"
    assert connection.zscore(board.keys["ranking"], member(index)) == total(index) + 1
