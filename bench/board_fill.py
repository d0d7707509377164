"""Shared by the Redis benchmarks: the benchmarks' own Redis database, and a fast way to fill a board's season.

Every Redis benchmark runs on `BENCH_REDIS_URL` (default redis://127.0.0.1:6379/14, a database the tests and the
local runtime do not use), on boards named `bench-*` of its own, and deletes them afterwards (`drop`: SCAN for the
season's keys, `Board.key_pattern`, and UNLINK them, freed in Redis's background thread, so other users of a shared
server are not blocked while millions of entries go). Nothing here runs FLUSHDB or FLUSHALL.

`fill` builds a season of a board directly, in the exact layout `leaderboard.board` uses (its keys come from the
`Board` itself, the member's shape from the module's constants):
- the `ranking` sorted set: points -> 6 bytes (2^48 - 1 - the moment the points were reached, in ms, big-endian) +
  user_id + ":" + display name;
- the players' hashes, `...:players:<crc32(user_id) mod 2^17>`: user_id -> the member's 6 bytes + display name.
It sends ZADDs of ZADD_MEMBERS members and, per CHUNK players, one HSET per players' hash that the chunk's players
fall in (grouped by hash, so a hash gets several fields per command once a chunk holds more players than there are
hashes), serialized to RESP by hand and written to a socket of its own without waiting for the previous chunk's
replies, so Redis inserts one chunk while Python formats the next; the replies (integers) are counted, not parsed.
`check_layout` then proves the layout with the project's own code: `Board.standing` reads a filled player back, and a
`Board.set_totals` that moves a filled player up replaces its member (the sorted set does not grow) and its hash entry.
"""

import os
import socket
import time
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import redis

from leaderboard.board import _LATEST, _MOMENT_BYTES, PLAYER_HASHES, Board, PlayerTotal

REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
# Players formatted per round of the pipeline (2^19: 4 a players' hash on average, so HSETs carry several fields).
CHUNK = 2**19
# Members per ZADD: Redis runs each command whole, so a shared server's other clients wait at most this long.
ZADD_MEMBERS = 10_000
# Filled players reached their points during the 30 days after this moment.
EPOCH_MS = 1_767_225_600_000
SPREAD_MS = 30 * 86_400_000
# Points are spread over 0..MAX_FILLED_TOTAL (many ties, as on a real board; ties are ordered by the member).
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


def moment(reached_ms: int) -> bytes:
    """The member's first bytes: later moments sort lower among equal points."""
    return int(_LATEST - reached_ms).to_bytes(_MOMENT_BYTES, "big")


def member(index: int, points_reached_ms: int | None = None) -> bytes:
    """The filled player's member in the ranking (reached at `reached_at_ms(index)` unless told otherwise)."""
    reached = reached_at_ms(index) if points_reached_ms is None else points_reached_ms
    return moment(reached) + f"{user_id(index)}:{display_name(index)}".encode()


def split_member(entry: bytes) -> tuple[str, str]:
    """A ranking member's user_id and display name."""
    user, _, name = entry[_MOMENT_BYTES:].partition(b":")
    return user.decode(), name.decode()


def season_keys(connection: "redis.Redis", board: Board) -> Iterator[bytes]:
    """Every key of the board's season (its players' hashes included), by SCAN."""
    yield from connection.scan_iter(match=board.key_pattern, count=10_000)


def drop(connection: "redis.Redis", board: Board) -> None:
    """Delete the season's keys without blocking Redis (UNLINK frees big keys in the background)."""
    batch: list[bytes] = []
    for key in season_keys(connection, board):
        batch.append(key)
        if len(batch) == 10_000:
            connection.unlink(*batch)
            batch.clear()
    if batch:
        connection.unlink(*batch)


class _Pipe:
    """A raw connection to the benchmarks' Redis: RESP written as is, replies counted (each an integer or an error,
    one line each) rather than parsed one by one in Python."""

    def __init__(self, connection: "redis.Redis") -> None:
        settings: dict[str, Any] = connection.connection_pool.connection_kwargs
        self._socket = socket.create_connection((settings.get("host", "127.0.0.1"), settings.get("port", 6379)))
        self._unread = b""
        hello: list[bytes] = []
        if settings.get("password"):
            words = [settings.get("username") or "default", settings["password"]]
            hello.append(_command(b"AUTH", *(word.encode() for word in words)))
        hello.append(_command(b"SELECT", str(settings.get("db", 0)).encode()))
        self.send(b"".join(hello))
        self.settle(len(hello))

    def send(self, packed: bytes) -> None:
        self._socket.sendall(packed)

    def settle(self, replies: int) -> None:
        """Wait for `replies` replies; raise the first error among them."""
        data = [self._unread]
        seen = self._unread.count(b"\r\n")
        while seen < replies:
            received = self._socket.recv(1 << 20)
            if not received:
                raise ConnectionError("Redis closed the connection")
            # A line end may straddle two reads.
            seen += received.count(b"\r\n") + (data[-1].endswith(b"\r") and received.startswith(b"\n"))
            data.append(received)
        text = b"".join(data)
        cut = 0
        for _ in range(replies):
            cut = text.index(b"\r\n", cut) + 2
        answered, self._unread = text[:cut], text[cut:]
        if answered.startswith(b"-") or b"\r\n-" in answered:
            start = 0 if answered.startswith(b"-") else answered.index(b"\r\n-") + 2
            raise redis.ResponseError(answered[start : answered.index(b"\r\n", start)].decode(errors="replace"))

    def close(self) -> None:
        self._socket.close()


@contextmanager
def _pipe(connection: "redis.Redis") -> Iterator[_Pipe]:
    pipe = _Pipe(connection)
    try:
        yield pipe
    finally:
        pipe.close()


def _bulk(value: bytes) -> bytes:
    return b"$%d\r\n%b\r\n" % (len(value), value)


def _command(*words: bytes) -> bytes:
    return b"*%d\r\n%b" % (len(words), b"".join(_bulk(word) for word in words))


def _header(name: bytes, key: bytes, pairs: int) -> bytes:
    """The RESP header of a command of `pairs` field/value (or score/member) pairs."""
    return b"*%d\r\n%b%b" % (2 + 2 * pairs, _bulk(name), _bulk(key))


def fill(
    connection: "redis.Redis",
    board: Board,
    players: int,
    say: Callable[[str], None] | None = None,
    points: Callable[[int], int] = total,
) -> list[int]:
    """Put `players` players (0..players-1, with `points(index)` points) on an empty season, CHUNK at a time,
    pipelined. Returns how many players each players' hash holds."""
    ranking = board.keys["ranking"].encode()
    hashes = players_hash_names(board)
    occupancy = [0] * PLAYER_HASHES
    next_report = time.perf_counter() + 5
    with _pipe(connection) as pipe:
        unanswered = 0
        for start in range(0, players, CHUNK):
            stop = min(players, start + CHUNK)
            zadd: list[bytes] = []
            by_hash: dict[int, list[bytes]] = defaultdict(list)
            for index in range(start, stop):
                uid = b"%032x" % index
                stamp = moment(reached_at_ms(index))
                name = display_name(index).encode()
                entry = stamp + uid + b":" + name
                zadd.append(_bulk(b"%d" % points(index)) + _bulk(entry))
                by_hash[zlib.crc32(uid) % PLAYER_HASHES].append(_bulk(uid) + _bulk(stamp + name))
            packed: list[bytes] = []
            for first in range(0, len(zadd), ZADD_MEMBERS):
                part = zadd[first : first + ZADD_MEMBERS]
                packed += [_header(b"ZADD", ranking, len(part)), *part]
            for number, fields in by_hash.items():
                packed += [_header(b"HSET", hashes[number], len(fields)), *fields]
                occupancy[number] += len(fields)
            pipe.send(b"".join(packed))
            pipe.settle(unanswered)  # the previous chunk's replies: Redis worked on it meanwhile
            unanswered = -(-len(zadd) // ZADD_MEMBERS) + len(by_hash)
            if say and time.perf_counter() >= next_report:
                say(f"{stop:,} of {players:,} players")
                next_report = time.perf_counter() + 5
        pipe.settle(unanswered)
    return occupancy


def fill_plain(connection: "redis.Redis", key: str, players: int) -> None:
    """A plain sorted set of `players` members (user_id -> the filled points): what a board of ZINCRBY would hold."""
    with _pipe(connection) as pipe:
        unanswered = 0
        for start in range(0, players, ZADD_MEMBERS):
            stop = min(players, start + ZADD_MEMBERS)
            pairs = [_bulk(b"%d" % total(index)) + _bulk(b"%032x" % index) for index in range(start, stop)]
            pipe.send(_header(b"ZADD", key.encode(), len(pairs)) + b"".join(pairs))
            pipe.settle(unanswered)
            unanswered = 1
        pipe.settle(unanswered)


def players_hash_names(board: Board) -> list[bytes]:
    """The names of the season's players' hashes, by number (checked against `Board.players_key`)."""
    base = board.players_key(user_id(0)).rpartition(":")[0]
    names = [f"{base}:{number}".encode() for number in range(PLAYER_HASHES)]
    for index in (0, 1, 12_345, 9_999_999):
        assert names[zlib.crc32(user_id(index).encode()) % PLAYER_HASHES].decode() == board.players_key(user_id(index))
    return names


def check_layout(connection: "redis.Redis", board: Board, players: int, points: Callable[[int], int] = total) -> None:
    """Fail unless the project's own code reads and updates a filled season as one it wrote itself."""
    index = players // 2
    uid = user_id(index)
    found = board.standing(uid)
    assert found is not None, "Board.standing does not find a filled player"
    standing, around = found
    assert (standing.user_id, standing.score, standing.user_name) == (uid, points(index), display_name(index)), standing
    assert connection.zrevrank(board.keys["ranking"], member(index)) == standing.rank - 1, "a wrong rank"
    assert standing in around, around
    ranking = board.keys["ranking"]
    before = connection.zcard(ranking)
    # Lower points change nothing: the ledger only ever moves a player up.
    lower = PlayerTotal(uid, display_name(index), points(index) - 1, reached_at_ms(index))
    assert board.set_totals([lower]).applied == 0, "set_totals moved a filled player down"
    # More points, reached later: the member changes (its first bytes), and must replace the old one, not join it.
    later = reached_at_ms(index) + 60_000
    assert board.set_totals([PlayerTotal(uid, display_name(index), points(index) + 1, later)]).applied == 1
    assert connection.zcard(ranking) == before, "set_totals did not find the filled member to replace"
    assert connection.zscore(ranking, member(index)) is None, "the filled member is still there"
    assert connection.zscore(ranking, member(index, later)) == points(index) + 1
    stored = connection.hget(board.players_key(uid), uid)
    assert stored == moment(later) + display_name(index).encode(), stored
    moved = board.standing(uid)
    assert moved is not None
    assert moved[0].score == points(index) + 1
