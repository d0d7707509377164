"""The board: a Redis sorted set per board, and every Redis key of the project (this module alone knows them).

Keys share a hash tag, `leaderboard:{<board>}:...`, so Lua scripts may touch them together on a cluster:
- `...:ranking` sorted set; score = the player's total (exact: totals stay far below 2^53); member =
  13 digits of (MAX_MS - the moment the total was reached) + ":" + user_id, so among equal totals ZREVRANGE puts
  whoever reached the total first first;
- `...:players` hash user_id -> "<version>|<member>": the member to find or replace, and the version of the total
  it holds, so a write of an older total (a late redelivery, a rebuild racing the consumer) changes nothing;
- `...:names` hash user_id -> display name, so reads touch nothing but Redis;
- `...:seq` the board's version: every change raises it, to at least the writer's clock in microseconds, so it keeps
  rising even after Redis restarts empty (clients ignore a board older than the one they show). The clock is the
  caller's: no script calls TIME, which ElastiCache Serverless has been reported to refuse inside scripts;
- `...:top_seq` the version at which the top 10 last changed; `...:published_top_seq` and `...:published_seq`, the
  ones last published;
- `...:publishing` the publishing lease: while it is held, one publisher is bound to publish every change (live.py);
- `...:watchers` sorted set user_id -> the moment (ms) their subscription to their own channel lapses: the players
  watching their standing live (renewed by every subscribe, see WATCH_MS); `...:welcome` set of the watchers who just
  subscribed and are owed their standing at once;
- `...:notified` hash user_id -> "rank|score" last published to that player (`...:notified_next`: the ones a
  publishing cycle is publishing, until its events are queued);
- `...:viewers:<window>` subscriptions to the board's channel counted per AUDIENCE_WINDOW_MS: its audience.
Every write and every read is one script call: one round trip. Each script names its keys (`KEYS` in the order of
`_KEY_NAMES`, then the two audience windows).
"""

import time
import uuid
from collections.abc import Callable, Iterable
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
# Clients renew their subscriptions every AUDIENCE_WINDOW_MS (the live feed's contract): a board's audience is the
# subscriptions counted over the last window, and a watcher who has not renewed for two windows has left.
AUDIENCE_WINDOW_MS = 300_000
WATCH_MS = 2 * AUDIENCE_WINDOW_MS

_KEY_NAMES = (
    *("ranking", "players", "names", "seq", "top_seq", "publishing", "published_top_seq", "published_seq"),
    *("watchers", "welcome", "notified", "notified_next"),
)
# Every script starts by naming its keys; the audience windows come last (their names move with the clock).
_HEADER = f"local {', '.join(_KEY_NAMES)}, viewers_now, viewers_before = unpack(KEYS)\n"
# Lua's unpack() takes at most a few thousand values: longer lists go to Redis in slices.
_IN_SLICES = """
local function in_slices(command, key, values)
  for i = 1, #values, 1000 do
    redis.call(command, key, unpack(values, i, math.min(i + 999, #values)))
  end
end
"""

# ARGV: lease token, lease ms, the writer's clock (microseconds), then groups of (user_id, total, version, member,
# display name), one per player. Returns {applied, 1 if this call took the publishing lease}.
_SET_TOTALS = """
local applied = 0
local top_before = redis.call('ZREVRANGE', ranking, 0, 9, 'WITHSCORES')
for i = 4, #ARGV, 5 do
  local user, version, member = ARGV[i], tonumber(ARGV[i + 2]), ARGV[i + 3]
  local current = redis.call('HGET', players, user)
  local newer = true
  if current then
    local bar = string.find(current, '|', 1, true)
    newer = tonumber(string.sub(current, 1, bar - 1)) < version
    if newer then redis.call('ZREM', ranking, string.sub(current, bar + 1)) end
  end
  if newer then
    redis.call('ZADD', ranking, ARGV[i + 1], member)
    redis.call('HSET', players, user, ARGV[i + 2] .. '|' .. member)
    redis.call('HSET', names, user, ARGV[i + 4])
    applied = applied + 1
  end
end
if applied == 0 then return {0, 0} end
local new_seq = math.max(tonumber(redis.call('GET', seq) or '0') + 1, tonumber(ARGV[3]))
redis.call('SET', seq, string.format('%.0f', new_seq))
local top_after = redis.call('ZREVRANGE', ranking, 0, 9, 'WITHSCORES')
local top_changed = #top_before ~= #top_after
for i = 1, #top_after do top_changed = top_changed or top_before[i] ~= top_after[i] end
if top_changed then redis.call('SET', top_seq, string.format('%.0f', new_seq)) end
local woke = redis.call('SET', publishing, ARGV[1], 'NX', 'PX', ARGV[2]) and 1 or 0
return {applied, woke}
"""

_NAMES_OF = """
local function names_of(entries)
  local ids = {}
  for i = 1, #entries, 2 do ids[#ids + 1] = string.sub(entries[i], 15) end
  if #ids == 0 then return {} end
  return redis.call('HMGET', names, unpack(ids))
end
"""

_TOP = (
    _NAMES_OF
    + """
local entries = redis.call('ZREVRANGE', ranking, 0, tonumber(ARGV[1]) - 1, 'WITHSCORES')
return {entries, names_of(entries)}
"""
)

_STANDING = (
    _NAMES_OF
    + """
local current = redis.call('HGET', players, ARGV[1])
if not current then return false end
local member = string.sub(current, string.find(current, '|', 1, true) + 1)
local rank = redis.call('ZREVRANK', ranking, member)
if not rank then return false end
local first = math.max(rank - tonumber(ARGV[2]), 0)
local entries = redis.call('ZREVRANGE', ranking, first, rank + tonumber(ARGV[2]), 'WITHSCORES')
return {rank, first, entries, names_of(entries)}
"""
)

# Returns the versions (board, top 10, top 10 published), the top 10 with names, and the audience windows' counts.
_SNAPSHOT = (
    _NAMES_OF
    + """
local entries = redis.call('ZREVRANGE', ranking, 0, 9, 'WITHSCORES')
local function get(key) return redis.call('GET', key) or '0' end
return {get(seq), get(top_seq), get(published_top_seq), entries, names_of(entries), get(viewers_now),
        get(viewers_before)}
"""
)

# ARGV: window ms. One more subscription to the board's channel in the current audience window.
_COUNT_VIEWER = """
redis.call('INCR', viewers_now)
redis.call('PEXPIRE', viewers_now, 2 * tonumber(ARGV[1]))
return 0
"""

# ARGV: user_id, the moment (ms) the watch lapses, lease token, lease ms. A player subscribed to their own channel: they
# watch until then, and are owed their standing at once if they have one (then, unless a publisher holds the lease,
# this call takes it: 1). Returns 0 otherwise.
_WATCH = """
redis.call('ZADD', watchers, ARGV[2], ARGV[1])
if redis.call('HEXISTS', players, ARGV[1]) == 0 then return 0 end
redis.call('SADD', welcome, ARGV[1])
return redis.call('SET', publishing, ARGV[3], 'NX', 'PX', ARGV[4]) and 1 or 0
"""

# ARGV: the publisher's lease, lease ms, the clock (ms), where to start among the watchers, the most changes to take.
# Unless another publisher holds the lease (then false): forgets the watchers who left; then, going round the watchers
# from `start`, takes up to `limit` whose standing is not the one last published to them (or who are owed it) and
# stages it in `notified_next`: it becomes the one published (`notified`) only once the cycle's events are queued
# (_FINISH_CYCLE), so a failed cycle is redone whole. Returns {board version, 1 if more changes wait, where the next
# cycle starts, then (user, rank, score, previous "rank|score" or '', name) per change}.
_RANK_CHANGES = (
    _IN_SLICES
    + """
local holder = redis.call('GET', publishing)
if holder and holder ~= ARGV[1] then return false end
redis.call('SET', publishing, ARGV[1], 'PX', ARGV[2])
local left = redis.call('ZRANGEBYSCORE', watchers, '-inf', ARGV[3])
if #left > 0 then
  redis.call('ZREMRANGEBYSCORE', watchers, '-inf', ARGV[3])
  in_slices('HDEL', notified, left)
  in_slices('SREM', welcome, left)
end
redis.call('DEL', notified_next)
local all = redis.call('ZRANGE', watchers, 0, -1)
local start, limit = tonumber(ARGV[4]) % math.max(#all, 1), tonumber(ARGV[5])
local result = {redis.call('GET', seq) or '0', 0, 0}
local taken = 0
for step = 0, #all - 1 do
  local index = (start + step) % #all
  local user = all[index + 1]
  local standing = false
  local current = redis.call('HGET', players, user)
  local rank, score
  if current then
    local member = string.sub(current, string.find(current, '|', 1, true) + 1)
    rank = redis.call('ZREVRANK', ranking, member)
    if rank then
      score = redis.call('ZSCORE', ranking, member)
      standing = (rank + 1) .. '|' .. score
    end
  end
  if not standing then
    redis.call('SREM', welcome, user)  -- nothing to tell them yet
  else
    local previous = redis.call('HGET', notified, user)
    if previous ~= standing or redis.call('SISMEMBER', welcome, user) == 1 then
      if taken == limit then
        result[2], result[3] = 1, index
        break
      end
      taken = taken + 1
      local name = redis.call('HGET', names, user) or user
      for _, value in ipairs({user, tostring(rank + 1), score, previous or '', name}) do
        result[#result + 1] = value
      end
      redis.call('HSET', notified_next, user, standing)
    end
  end
end
return result
"""
)

# ARGV: lease token, the seq just published, the top_seq just published, lease ms, 1 if the cycle left changes for the
# next. Returns 1 if changes wait (the lease is renewed, or taken again if it expired meanwhile: the writes made while
# it was held woke nobody), 0 if the board is up to date (the lease is released), -1 if another publisher holds the
# lease (it took over, and answers for every change since).
_FINISH_CYCLE = """
local holder = redis.call('GET', publishing)
if holder and holder ~= ARGV[1] then return -1 end
redis.call('SET', published_top_seq, ARGV[3])
redis.call('SET', published_seq, ARGV[2])
local told = redis.call('HGETALL', notified_next)
for i = 1, #told, 2 do
  redis.call('HSET', notified, told[i], told[i + 1])
  redis.call('SREM', welcome, told[i])
end
redis.call('DEL', notified_next)
local up_to_date = (redis.call('GET', seq) or '0') == ARGV[2] and ARGV[5] == '0'
if up_to_date and redis.call('SCARD', welcome) == 0 then
  if holder then redis.call('DEL', publishing) end
  return 0
end
redis.call('SET', publishing, ARGV[1], 'PX', ARGV[4])
return 1
"""

# ARGV: lease token, lease ms, the token to hold it with from now on (the same one to renew it, a fresh one to adopt
# it). Keeps a publisher's lease alive, taking it back if it expired; 0 if another publisher holds it.
_HOLD = """
local holder = redis.call('GET', publishing)
if holder and holder ~= ARGV[1] then return 0 end
redis.call('SET', publishing, ARGV[3], 'PX', ARGV[2])
return 1
"""

# ARGV: lease token. Gives the lease up, if it is still this publisher's.
_ABANDON = """
if redis.call('GET', publishing) == ARGV[1] then redis.call('DEL', publishing) end
return 0
"""

# ARGV: lease token, lease ms. The safety net: takes the lease if something waits to be published (a change, or a
# watcher owed their standing) and nobody holds the lease (a wake-up was lost). 1 if taken.
_CLAIM = """
local behind = (redis.call('GET', seq) or '0') ~= (redis.call('GET', published_seq) or '0')
if not behind and redis.call('SCARD', welcome) == 0 then return 0 end
return redis.call('SET', publishing, ARGV[1], 'NX', 'PX', ARGV[2]) and 1 or 0
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
    """The board as one instant saw it: its version, the top 10 with the version at which that last changed, and its
    audience (subscriptions to its channel over the last AUDIENCE_WINDOW_MS, the window before weighed by how much of
    it the last window still covers)."""

    seq: int
    top_seq: int
    published_top_seq: int
    top: list[Standing]
    viewers: float

    @property
    def top_is_new(self) -> bool:
        """The top 10 changed since it was last published."""
        return self.top_seq > self.published_top_seq


@dataclass(frozen=True)
class RankChange:
    standing: Standing
    previous_rank: int | None


@dataclass(frozen=True)
class RankChanges:
    """What one publishing cycle tells the watchers: the board's version, their new standings, and whether more
    changes than the cycle could take wait for the next one (which starts at `next_start` among the watchers)."""

    seq: int
    changes: list[RankChange]
    more: bool
    next_start: int


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
    """One named board in Redis. `clock` (epoch seconds) is what every version, lease and window is measured with."""

    def __init__(self, name: str, client: "redis.Redis", clock: Callable[[], float] = time.time) -> None:
        self.name = name
        self._tag = f"leaderboard:{{{name}}}"
        self._keys = [f"{self._tag}:{suffix}" for suffix in _KEY_NAMES]
        self._clock = clock
        scripts = {
            "set_totals": _SET_TOTALS,
            "top": _TOP,
            "standing": _STANDING,
            "snapshot": _SNAPSHOT,
            "count_viewer": _COUNT_VIEWER,
            "watch": _WATCH,
            "rank_changes": _RANK_CHANGES,
            "finish_cycle": _FINISH_CYCLE,
            "hold": _HOLD,
            "abandon": _ABANDON,
            "claim": _CLAIM,
        }
        self._scripts = {name: client.register_script(_HEADER + body) for name, body in scripts.items()}

    @property
    def keys(self) -> dict[str, str]:
        """The board's Redis keys by name (the audience windows aside)."""
        return dict(zip(_KEY_NAMES, self._keys, strict=True))

    def set_totals(self, totals: Iterable[PlayerTotal]) -> Written:
        """Write absolute totals, each applied only if its version is newer than the board's; one round trip.
        If any was applied, the board's version rises and, unless a publisher holds the lease, this write takes it."""
        lease = uuid.uuid4().hex
        args: list[str | int] = [lease, LEASE_MS, int(self._clock() * 1_000_000)]
        for player in totals:
            member = f"{MAX_MS - player.reached_at_ms:013d}:{player.user_id}"
            args += [player.user_id, player.total, player.version, member, player.display_name]
        if len(args) == 3:
            return Written(applied=0, lease=None)
        applied, woke = cast(list[int], self._call("set_totals", args))
        return Written(applied=int(applied), lease=lease if woke else None)

    def top(self, count: int = TOP) -> list[Standing]:
        """The first `count` players, rank 1 first."""
        entries, names = cast(list[Any], self._call("top", [count]))
        return _standings(entries, names, first_rank=1)

    def standing(self, user_id: str, around: int = AROUND) -> tuple[Standing, list[Standing]] | None:
        """The player's standing and up to `around` players above and below (the player included)."""
        found = self._call("standing", [user_id, around])
        if not found:
            return None
        rank, first, entries, names = cast(list[Any], found)
        neighbours = _standings(entries, names, first_rank=int(first) + 1)
        return next(s for s in neighbours if s.rank == int(rank) + 1), neighbours

    def snapshot(self) -> Snapshot:
        """The board's versions, top 10 and audience, read together."""
        now_ms = self._now_ms()
        seq, top_seq, published, entries, names, now_count, before_count = cast(
            list[Any], self._call("snapshot", [], now_ms)
        )
        covered = 1 - (now_ms % AUDIENCE_WINDOW_MS) / AUDIENCE_WINDOW_MS  # of the window before, still in the last
        return Snapshot(
            seq=int(seq),
            top_seq=int(top_seq),
            published_top_seq=int(published),
            top=_standings(entries, names, first_rank=1),
            viewers=int(now_count) + int(before_count) * covered,
        )

    def count_viewer(self) -> None:
        """One more subscription to the board's channel: its audience (clients renew every AUDIENCE_WINDOW_MS)."""
        self._call("count_viewer", [AUDIENCE_WINDOW_MS])

    def watch(self, user_id: str) -> str | None:
        """The player subscribed to their own channel: they watch their standing for WATCH_MS, and are owed it at
        once. The publishing lease if this call took it (then the caller wakes a publisher)."""
        lease = uuid.uuid4().hex
        woke = self._call("watch", [user_id, self._now_ms() + WATCH_MS, lease, LEASE_MS])
        return lease if int(woke) else None

    def rank_changes(self, lease: str, limit: int, start: int = 0, hold_ms: int = 0) -> RankChanges:
        """The board's version, and up to `limit` watchers whose standing differs from the one last published to them
        (or who are owed it), going round the watchers from `start`; once the cycle is finished, these are the
        standings remembered as published. The lease is renewed for `hold_ms` more than usual (the cycle's length).
        Raises LeaseLost if another publisher holds the lease."""
        found = self._call("rank_changes", [lease, LEASE_MS + hold_ms, self._now_ms(), start, limit])
        if not found:
            raise LeaseLost
        seq, more, next_start, *fields = cast(list[bytes], found)
        changes = []
        for index in range(0, len(fields), 5):
            user_id, rank, score, previous, name = (value.decode() for value in fields[index : index + 5])
            standing = Standing(user_id=user_id, user_name=name, rank=int(rank), score=int(float(score)))
            changes.append(RankChange(standing, previous_rank=int(previous.split("|")[0]) if previous else None))
        return RankChanges(int(seq), changes, more=bool(int(more)), next_start=int(next_start))

    def finish_cycle(self, lease: str, snapshot: Snapshot, more: bool, hold_ms: int = 0) -> bool:
        """Record that `snapshot` (and the standings of the last `rank_changes`) went out. True if changes wait (this
        publisher goes on, its lease renewed for `hold_ms` more than usual: its wait before the next cycle); False if
        the board is up to date (the lease is released) or another publisher took over."""
        args: list[str | int] = [lease, snapshot.seq, snapshot.top_seq, LEASE_MS + hold_ms, int(more)]
        return int(self._call("finish_cycle", args)) == 1

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
        if not int(self._call("hold", [lease, LEASE_MS, token])):
            raise LeaseLost

    def abandon(self, lease: str) -> None:
        """Give the publishing lease up (it could not be acted on); the next change takes it again."""
        self._call("abandon", [lease])

    def claim(self) -> str | None:
        """The lease, if something waits to be published and no publisher holds it."""
        lease = uuid.uuid4().hex
        return lease if int(self._call("claim", [lease, LEASE_MS])) else None

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def audience_keys(self, now_ms: int | None = None) -> tuple[str, str]:
        """The audience counters of the current window and of the one before (their names move with the clock)."""
        window = (now_ms if now_ms is not None else self._now_ms()) // AUDIENCE_WINDOW_MS
        return f"{self._tag}:viewers:{window}", f"{self._tag}:viewers:{window - 1}"

    def _call(self, script: str, args: list[str | int], now_ms: int | None = None) -> Any:
        keys = [*self._keys, *self.audience_keys(now_ms)]
        try:
            return self._scripts[script](keys=keys, args=args)
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
