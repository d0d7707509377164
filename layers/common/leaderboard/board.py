"""The board: a Redis sorted set per board, and every Redis key of the project (this module alone knows them).

Keys share a hash tag, `leaderboard:{<board>}:...`, so Lua scripts may touch them together on a cluster:
- `...:ranking` sorted set; score = the player's total (exact: totals stay far below 2^53); member =
  13 digits of (MAX_MS - the moment the total was reached) + ":" + user_id, so among equal totals ZREVRANGE puts
  whoever reached the total first first;
- `...:players` hash user_id -> "<version>|<member>": the member to find or replace, and the version of the total
  it holds, so a write of an older total (a late redelivery, a rebuild racing the consumer) changes nothing;
- `...:names` hash user_id -> display name, so reads touch nothing but Redis;
- `...:seq` the board's version: every change raises it, to at least the server's clock in microseconds, so it keeps
  rising even after Redis restarts empty (clients ignore a board older than the one they show);
- `...:top_seq` the version at which the top 10 last changed; `...:published_top` and `...:published_seq`, the ones
  last pushed to clients;
- `...:publishing` the publishing lease: while it is held, one publisher is bound to push every change (see live.py);
- `...:notified` hash user_id -> "rank|score" last pushed to that player's connections (`...:notified_next`: the
  ones a publishing cycle is pushing, until its posts are queued).
Every write and every read is one script call: one round trip.
"""

import uuid
from collections.abc import Iterable, Sequence
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
# How long the publishing lease outlives its holder's last sign of life: a publisher that died stops blocking the next
# one after this.
LEASE_MS = 10_000

# KEYS: ranking, players, names, seq, top_seq, publishing.
# ARGV: lease token, lease ms, then groups of (user_id, total, version, member, display name), one per player.
# Returns {applied, 1 if this call took the publishing lease}.
_SET_TOTALS = """
local applied = 0
local top_before = redis.call('ZREVRANGE', KEYS[1], 0, 9, 'WITHSCORES')
for i = 3, #ARGV, 5 do
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
if applied == 0 then return {0, 0} end
local now = redis.call('TIME')
local seq = math.max(tonumber(redis.call('GET', KEYS[4]) or '0') + 1, now[1] * 1000000 + now[2])
redis.call('SET', KEYS[4], string.format('%.0f', seq))
local top_after = redis.call('ZREVRANGE', KEYS[1], 0, 9, 'WITHSCORES')
local top_changed = #top_before ~= #top_after
for i = 1, #top_after do top_changed = top_changed or top_before[i] ~= top_after[i] end
if top_changed then redis.call('SET', KEYS[5], string.format('%.0f', seq)) end
local woke = redis.call('SET', KEYS[6], ARGV[1], 'NX', 'PX', ARGV[2]) and 1 or 0
return {applied, woke}
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

_SNAPSHOT = (
    _NAMES_OF
    + """
local entries = redis.call('ZREVRANGE', KEYS[1], 0, 9, 'WITHSCORES')
local function get(key) return redis.call('GET', key) or '0' end
return {get(KEYS[4]), get(KEYS[5]), get(KEYS[7]), entries, names_of(entries)}
"""
)

# ARGV: the publisher's lease, lease ms, then every connected player. Unless another publisher holds the lease (then
# false), returns the board's version, then (user, rank, score, previous "rank|score" or '', name) for each player
# whose standing is not the one last pushed to them. The standings read are staged in `notified_next`: they become
# the ones pushed (`notified`) only once the cycle's posts are queued (_PUBLISHED), so a failed cycle is redone whole.
_RANK_CHANGES = """
local holder = redis.call('GET', KEYS[6])
if holder and holder ~= ARGV[1] then return false end
redis.call('SET', KEYS[6], ARGV[1], 'PX', ARGV[2])
local changed = {redis.call('GET', KEYS[4]) or '0'}
redis.call('DEL', KEYS[10])
for i = 3, #ARGV do
  local user = ARGV[i]
  local current = redis.call('HGET', KEYS[2], user)
  if current then
    local member = string.sub(current, string.find(current, '|', 1, true) + 1)
    local rank = redis.call('ZREVRANK', KEYS[1], member)
    if rank then
      local score = redis.call('ZSCORE', KEYS[1], member)
      local standing = (rank + 1) .. '|' .. score
      local previous = redis.call('HGET', KEYS[8], user)
      if previous ~= standing then
        local name = redis.call('HGET', KEYS[3], user) or user
        for _, value in ipairs({user, tostring(rank + 1), score, previous or '', name}) do
          changed[#changed + 1] = value
        end
      end
      redis.call('HSET', KEYS[10], user, standing)
    end
  end
end
return changed
"""

# ARGV: lease token, the seq just published, the top_seq just published, lease ms.
# Returns 1 if newer changes wait (the lease is renewed, or taken again if it expired meanwhile: the writes made
# while it was held woke nobody), 0 if the board is up to date (the lease is released), -1 if another publisher
# holds the lease (it took over, and answers for every change since).
_PUBLISHED = """
local holder = redis.call('GET', KEYS[6])
if holder and holder ~= ARGV[1] then return -1 end
redis.call('SET', KEYS[7], ARGV[3])
redis.call('SET', KEYS[9], ARGV[2])
if redis.call('EXISTS', KEYS[10]) == 1 then redis.call('RENAME', KEYS[10], KEYS[8]) else redis.call('DEL', KEYS[8]) end
if (redis.call('GET', KEYS[4]) or '0') == ARGV[2] then
  if holder then redis.call('DEL', KEYS[6]) end
  return 0
end
redis.call('SET', KEYS[6], ARGV[1], 'PX', ARGV[4])
return 1
"""

# ARGV: lease token, lease ms, the token to hold it with from now on (the same one to renew it, a fresh one to adopt
# it). Keeps a publisher's lease alive, taking it back if it expired; 0 if another publisher holds it.
_HOLD = """
local holder = redis.call('GET', KEYS[6])
if holder and holder ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[6], ARGV[3], 'PX', ARGV[2])
return 1
"""

# ARGV: lease token. Gives the lease up, if it is still this publisher's.
_ABANDON = """
if redis.call('GET', KEYS[6]) == ARGV[1] then redis.call('DEL', KEYS[6]) end
return 0
"""

# ARGV: lease token, lease ms. The safety net: takes the lease if the board changed since it was last published and
# nobody holds the lease (a wake-up was lost). 1 if taken.
_CLAIM = """
if (redis.call('GET', KEYS[4]) or '0') == (redis.call('GET', KEYS[9]) or '0') then return 0 end
return redis.call('SET', KEYS[6], ARGV[1], 'NX', 'PX', ARGV[2]) and 1 or 0
"""


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


@dataclass(frozen=True)
class Written:
    """What `Board.set_totals` did: how many totals it applied, and the publishing lease if the write took it (then
    the writer must wake a publisher, see live.py)."""

    applied: int
    lease: str | None


@dataclass(frozen=True)
class Snapshot:
    """The board as one instant saw it: its version, and the top 10 with the version at which that last changed."""

    seq: int
    top_seq: int
    published_top_seq: int
    top: list[Standing]

    @property
    def top_is_new(self) -> bool:
        """The top 10 changed since it was last pushed."""
        return self.top_seq > self.published_top_seq


@dataclass(frozen=True)
class RankChange:
    standing: Standing
    previous_rank: int | None


class LeaseLost(Exception):
    """Another publisher holds the publishing lease: it answers for the changes from here on."""


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
        suffixes = [
            *("ranking", "players", "names", "seq", "top_seq"),
            *("publishing", "published_top", "notified", "published_seq", "notified_next"),
        ]
        self.keys = [f"{tag}:{suffix}" for suffix in suffixes]
        self._client = client
        self._set_totals = client.register_script(_SET_TOTALS)
        self._top = client.register_script(_TOP)
        self._standing = client.register_script(_STANDING)
        self._snapshot = client.register_script(_SNAPSHOT)
        self._rank_changes = client.register_script(_RANK_CHANGES)
        self._published = client.register_script(_PUBLISHED)
        self._abandon = client.register_script(_ABANDON)
        self._hold = client.register_script(_HOLD)
        self._claim = client.register_script(_CLAIM)

    def set_totals(self, totals: Iterable[PlayerTotal]) -> Written:
        """Write absolute totals, each applied only if its version is newer than the board's; one round trip.
        If any was applied, the board's version rises and, unless a publisher holds the lease, this write takes it."""
        lease = uuid.uuid4().hex
        args: list[str | int] = [lease, LEASE_MS]
        for player in totals:
            member = f"{MAX_MS - player.reached_at_ms:013d}:{player.user_id}"
            args += [player.user_id, player.total, player.version, member, player.display_name]
        if len(args) == 2:
            return Written(applied=0, lease=None)
        applied, woke = cast(list[int], self._call(self._set_totals, args))
        return Written(applied=int(applied), lease=lease if woke else None)

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

    def snapshot(self) -> Snapshot:
        """The board's version and top 10, read together."""
        seq, top_seq, published, entries, names = cast(list[Any], self._call(self._snapshot, []))
        return Snapshot(
            seq=int(seq),
            top_seq=int(top_seq),
            published_top_seq=int(published),
            top=_standings(entries, names, first_rank=1),
        )

    def rank_changes(self, lease: str, user_ids: Sequence[str]) -> tuple[int, list[RankChange]]:
        """The board's version, and the connected players whose standing differs from the one last pushed to them
        (or who were never told); once `published`, these players' standings are the ones remembered as pushed.
        Raises LeaseLost if another publisher holds the lease."""
        found = self._call(self._rank_changes, [lease, LEASE_MS, *dict.fromkeys(user_ids)])
        if not found:
            raise LeaseLost
        seq, *fields = cast(list[bytes], found)
        changes = []
        for index in range(0, len(fields), 5):
            user_id, rank, score, previous, name = (value.decode() for value in fields[index : index + 5])
            standing = Standing(user_id=user_id, user_name=name, rank=int(rank), score=int(float(score)))
            changes.append(RankChange(standing, previous_rank=int(previous.split("|")[0]) if previous else None))
        return int(seq), changes

    def published(self, lease: str, snapshot: Snapshot) -> bool:
        """Record that `snapshot` went out; True if newer changes wait (this publisher goes on, lease renewed),
        False if the board is up to date (the lease is released) or another publisher took over."""
        outcome = int(self._call(self._published, [lease, snapshot.seq, snapshot.top_seq, LEASE_MS]))
        return outcome == 1

    def adopt(self, lease: str) -> str:
        """Swap a wake-up's lease for a token of this publisher's own, so a duplicated wake-up (SQS delivers at least
        once) finds the lease taken; raises LeaseLost if another publisher holds it."""
        own = uuid.uuid4().hex
        self._hold_lease(lease, own)
        return own

    def renew(self, lease: str) -> None:
        """Keep the lease through a long cycle; raises LeaseLost if another publisher took it."""
        self._hold_lease(lease, lease)

    def _hold_lease(self, lease: str, token: str) -> None:
        if not int(self._call(self._hold, [lease, LEASE_MS, token])):
            raise LeaseLost

    def abandon(self, lease: str) -> None:
        """Give the publishing lease up (it could not be acted on); the next change takes it again."""
        self._call(self._abandon, [lease])

    def claim(self) -> str | None:
        """The lease, if the board changed since it was last published and no publisher holds it."""
        lease = uuid.uuid4().hex
        return lease if int(self._call(self._claim, [lease, LEASE_MS])) else None

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
