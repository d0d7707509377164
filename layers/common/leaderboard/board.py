"""The board: a Redis sorted set per board, and every Redis key of the project (this module alone knows them).

Keys share a hash tag, `leaderboard:{<board>}:...`, so Lua scripts may touch them together on a cluster:
- `...:ranking` sorted set; score = the player's total (exact: totals stay far below 2^53); member =
  13 digits of (MAX_MS - the moment the total was reached) + ":" + user_id, so among equal totals ZREVRANGE puts
  whoever reached the total first first;
- `...:players` hash user_id -> "<version>|<member>": the member to find or replace, and the version of the total
  it holds, so a write of an older total (a late redelivery, a rebuild racing the consumer) changes nothing;
- `...:names` hash user_id -> display name, so reads touch nothing but Redis.
Every write and every read is one script call: one round trip.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from typing import Any, cast

import redis

from leaderboard.config import settings
from leaderboard.problems import ServiceUnavailable

# Millisecond timestamps below this (the year 2286) fit in 13 digits.
MAX_MS = 10**13 - 1
AROUND = 4
TOP = 10

# ARGV: groups of (user_id, total, version, member, display name), one per player.
_SET_TOTALS = """
local applied = 0
for i = 1, #ARGV, 5 do
  local user, version, member = ARGV[i], tonumber(ARGV[i + 2]), ARGV[i + 3]
  local current = redis.call('HGET', KEYS[2], user)
  local newer = true
  if current then
    local bar = string.find(current, '|', 1, true)
    newer = tonumber(string.sub(current, 1, bar - 1)) < version
    if newer then redis.call('ZREM', KEYS[1], string.sub(current, bar + 1)) end
  end
  if newer then
    redis.call('ZADD', KEYS[1], ARGV[i + 1], member)
    redis.call('HSET', KEYS[2], user, ARGV[i + 2] .. '|' .. member)
    redis.call('HSET', KEYS[3], user, ARGV[i + 4])
    applied = applied + 1
  end
end
return applied
"""

_NAMES_OF = """
local function names_of(entries)
  local ids = {}
  for i = 1, #entries, 2 do ids[#ids + 1] = string.sub(entries[i], 15) end
  if #ids == 0 then return {} end
  return redis.call('HMGET', KEYS[3], unpack(ids))
end
"""

_TOP = (
    _NAMES_OF
    + """
local entries = redis.call('ZREVRANGE', KEYS[1], 0, tonumber(ARGV[1]) - 1, 'WITHSCORES')
return {entries, names_of(entries)}
"""
)

_STANDING = (
    _NAMES_OF
    + """
local current = redis.call('HGET', KEYS[2], ARGV[1])
if not current then return false end
local member = string.sub(current, string.find(current, '|', 1, true) + 1)
local rank = redis.call('ZREVRANK', KEYS[1], member)
if not rank then return false end
local first = math.max(rank - tonumber(ARGV[2]), 0)
local entries = redis.call('ZREVRANGE', KEYS[1], first, rank + tonumber(ARGV[2]), 'WITHSCORES')
return {rank, first, entries, names_of(entries)}
"""
)


@dataclass(frozen=True)
class PlayerTotal:
    """A player's total as the ledger holds it: `version` counts the scores in it."""

    user_id: str
    display_name: str
    total: int
    version: int
    reached_at_ms: int


@dataclass(frozen=True)
class Standing:
    user_id: str
    user_name: str
    rank: int
    score: int

    def body(self) -> dict[str, Any]:
        return {"user_id": self.user_id, "user_name": self.user_name, "rank": self.rank, "score": self.score}


class BoardUnavailable(ServiceUnavailable):
    """Redis could not be reached: readers get 503, the consumer fails its batch for SQS to deliver again."""

    def __init__(self) -> None:
        super().__init__("The leaderboard is unavailable for a moment; try again shortly.", retry_after=1)


@cache
def _redis(url: str) -> "redis.Redis":
    # One small pool per process, reused by warm invocations; short timeouts so a dead Redis fails fast.
    return redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2, max_connections=4)


class Board:
    """One named board in Redis."""

    def __init__(self, name: str, client: "redis.Redis") -> None:
        tag = f"leaderboard:{{{name}}}"
        self.keys = [f"{tag}:ranking", f"{tag}:players", f"{tag}:names"]
        self._client = client
        self._set_totals = client.register_script(_SET_TOTALS)
        self._top = client.register_script(_TOP)
        self._standing = client.register_script(_STANDING)

    def set_totals(self, totals: Iterable[PlayerTotal]) -> int:
        """Write absolute totals, each applied only if its version is newer than the board's; one round trip.
        Returns how many were applied."""
        args: list[str | int] = []
        for player in totals:
            member = f"{MAX_MS - player.reached_at_ms:013d}:{player.user_id}"
            args += [player.user_id, player.total, player.version, member, player.display_name]
        if not args:
            return 0
        return int(self._call(self._set_totals, args))

    def top(self, count: int = TOP) -> list[Standing]:
        """The first `count` players, rank 1 first."""
        entries, names = cast(list[Any], self._call(self._top, [count]))
        return _standings(entries, names, first_rank=1)

    def standing(self, user_id: str, around: int = AROUND) -> tuple[Standing, list[Standing]] | None:
        """The player's standing and up to `around` players above and below (the player included)."""
        found = self._call(self._standing, [user_id, around])
        if not found:
            return None
        rank, first, entries, names = cast(list[Any], found)
        neighbours = _standings(entries, names, first_rank=int(first) + 1)
        return next(s for s in neighbours if s.rank == int(rank) + 1), neighbours

    def _call(self, script: Any, args: list[str | int]) -> Any:
        try:
            return script(keys=self.keys, args=args)
        except redis.RedisError as exc:
            raise BoardUnavailable from exc


def _standings(entries: list[bytes], names: list[bytes | None], first_rank: int) -> list[Standing]:
    standings = []
    for index in range(0, len(entries), 2):
        user_id = entries[index][14:].decode()
        name = names[index // 2]
        standings.append(
            Standing(
                user_id=user_id,
                user_name=name.decode() if name is not None else user_id,
                rank=first_rank + index // 2,
                score=int(float(entries[index + 1])),
            )
        )
    return standings


def board() -> Board:
    """The board this function is configured for (BOARD_KEY), on the configured Redis (REDIS_URL)."""
    return _board(settings.board_key, settings.redis_url)


@cache
def _board(name: str, url: str) -> Board:
    return Board(name, _redis(url))
